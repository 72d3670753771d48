"""The chaos tests reuse the worker tests' worlds (a bucket, a queue, a pipeline file)."""

from tests.worker.conftest import js_setup, setup

__all__ = ["js_setup", "setup"]
