"""A user handler (``type: python``): counts failed logins per user, reports those at the threshold.

Used by ``examples/pipeline.yaml`` as ``handler: audit_handler:Audit``; the module must be
importable: logferry imports it from the pipeline file's folder.
"""

from __future__ import annotations

from typing import Any


class Audit:
    """Counts records whose ``outcome`` is ``failure``, per ``user``."""

    def setup(self, args: dict[str, Any]) -> None:
        """Called once with the sink's ``args`` from the pipeline file."""
        self.threshold = args.get("threshold", 1)
        self.failures: dict[str, int] = {}

    def recv(self, meta: dict[str, Any], record: Any) -> None:
        """Called for every record routed to this sink; calls are serialized.

        meta: source, bucket, key, format, timestamp (ISO-8601 UTC), timestamp_ms, position.
        record: the parsed JSON object when the line is one, else the line (str).
        """
        if isinstance(record, dict) and record.get("outcome") == "failure":
            user = record.get("user", "?")
            self.failures[user] = self.failures.get(user, 0) + 1

    def result(self) -> dict[str, int]:
        """What appears in the run's summary under ``handlers``."""
        return {u: n for u, n in self.failures.items() if n >= self.threshold}
