"""The chaos tests reuse the worker tests' world (a bucket, a queue, a pipeline file)."""

from tests.worker.conftest import setup

__all__ = ["setup"]
