"""Fixtures of the worker tests (defined in ``world.py``, shared with ``tests/chaos``)."""

from tests.ledger.conftest import pg_admin, pg_url
from tests.worker.world import js_world, world

__all__ = ["js_world", "pg_admin", "pg_url", "world"]
