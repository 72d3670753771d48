"""Fault-injection fixtures: the throwaway Postgres databases of the ledger suite."""

from tests.ledger.conftest import pg_admin, pg_url

__all__ = ["pg_admin", "pg_url"]
