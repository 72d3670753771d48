"""The chaos tests reuse the worker tests' worlds (a bucket, a queue, a pipeline file)."""

from tests.worker.world import js_world, world

__all__ = ["js_world", "world"]
