"""logferry as a library: ship a source to a file sink and print the summary (docs/reference.md).

    python examples/ship_library.py SOURCE OUT_DIR [LEDGER]

SOURCE is anything `logferry ship` takes (``s3://BUCKET/PREFIX``, ``cos://…``, a directory);
the last line of stdout is the same JSON summary as ``logferry ship --json``.
"""

from __future__ import annotations

import json
import sys

from logferry import ShipOptions, SinkOptions, ship


def main(argv: list[str]) -> int:
    """Ship ``argv[0]`` to the directory ``argv[1]``; exit 1 when an object failed."""
    if len(argv) not in (2, 3):
        print(__doc__, file=sys.stderr)
        return 2
    source, out_dir = argv[0], argv[1]
    ledger = argv[2] if len(argv) == 3 else "sqlite:///flowlogs-ledger.db"
    result = ship(
        source,
        [f"file://{out_dir}" if out_dir.startswith("/") else out_dir],
        ShipOptions(workers=8, retry_timeout=120),
        sink_options=SinkOptions(app="flowlogs"),
        ledger=ledger,
    )
    if not result.ok:
        for failure in result.failed:
            print(failure.key, failure.error, file=sys.stderr)
    print(json.dumps(result.to_dict()))  # the same summary as --json
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
