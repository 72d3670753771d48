"""YAML read within bounds: pipeline and options files come from users and buckets.

:func:`load_yaml_limited` reads a document like ``yaml.safe_load`` but refuses one that is
too big, uses too many aliases (a "billion laughs" bomb), expands to too many values or nests
too deep, and expands ``${ENV}`` references. It lives apart from :mod:`logferry.config` so
that commands which read no YAML (``ship``, ``worker``) do not import PyYAML.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import yaml

from logferry.errors import ConfigError

__all__ = [
    "MAX_YAML_ALIASES",
    "MAX_YAML_BYTES",
    "MAX_YAML_DEPTH",
    "MAX_YAML_NODES",
    "load_yaml_limited",
]

MiB = 1024 * 1024

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _interpolate(text: str, line: int, where: str, env: Mapping[str, str]) -> str:
    def sub(m: re.Match[str]) -> str:
        name, default = m.group(1), m.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        raise ConfigError(f"{where}:{line}: ${{{name}}} is not set (use ${{{name}:-default}})")

    return _ENV_REF.sub(sub, text)


MAX_YAML_BYTES = MiB
"""A pipeline (or options) file larger than this is refused before it is parsed."""
MAX_YAML_ALIASES = 100
"""``*alias`` uses per document: enough to share settings, too few for a billion laughs."""
MAX_YAML_NODES = 10_000
"""Values after aliases are expanded: a bomb of nested aliases stops here, in milliseconds."""
MAX_YAML_DEPTH = 64
"""Nesting of mappings and lists."""

_MERGE = "tag:yaml.org,2002:merge"


class _CountingLoader(yaml.SafeLoader):
    """A safe loader that refuses a document with too many ``*alias`` uses while composing."""

    def __init__(self, stream: str, where: str, max_aliases: int) -> None:
        super().__init__(stream)
        self.where, self.max_aliases, self.aliases = where, max_aliases, 0

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > self.max_aliases:
                line = self.peek_event().start_mark.line + 1
                raise ConfigError(
                    f"{self.where}:{line}: more than {self.max_aliases} aliases (*name): refused"
                )
        return super().compose_node(parent, index)


class _Builder:
    """Builds plain values from YAML nodes within a node budget, noting each path's line."""

    def __init__(
        self, where: str, env: Mapping[str, str] | None, lines: dict[tuple[Any, ...], int],
        max_nodes: int, max_depth: int,
    ) -> None:  # fmt: skip
        self.where, self.env, self.lines = where, env, lines
        self.max_nodes, self.max_depth, self.nodes = max_nodes, max_depth, 0
        self._scalars = yaml.constructor.SafeConstructor()

    def _fail(self, node: yaml.Node, what: str) -> ConfigError:
        return ConfigError(f"{self.where}:{node.start_mark.line + 1}: {what}")

    def scalar(self, node: yaml.Node) -> Any:
        """One scalar as ``yaml.safe_load`` reads it (int, bool, date, string…)."""
        if not isinstance(node, yaml.ScalarNode):
            raise self._fail(node, "a key must be a plain value, not a mapping or a list")
        try:
            return self._scalars.construct_object(node, deep=True)
        except (yaml.YAMLError, ValueError) as exc:
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise self._fail(node, f"not a valid value: {problem}") from None

    def build(self, node: yaml.Node, path: tuple[Any, ...]) -> Any:
        """The value of ``node``; ``${ENV}`` references expanded when there is an environment."""
        self.nodes += 1
        if self.nodes > self.max_nodes:
            # The anchor's line would point into the bomb's first level; name the entry
            # whose expansion went over instead.
            top = self.lines.get(path[:1], node.start_mark.line + 1)
            raise ConfigError(
                f"{self.where}:{top}: {path[0] if path else 'document'}: more than "
                f"{self.max_nodes:,} values once aliases are expanded: refused"
            )
        if len(path) > self.max_depth:
            raise self._fail(node, f"nested more than {self.max_depth} levels deep: refused")
        self.lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        value = self.scalar(node)
        if isinstance(value, str) and "${" in value and self.env is not None:
            value = _interpolate(value, self.lines[path], self.where, self.env)
        return value

    def _mapping(self, node: yaml.MappingNode, path: tuple[Any, ...]) -> dict[Any, Any]:
        out: dict[Any, Any] = {}
        merged: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE:  # `<<: *base`: the mapping's own keys win
                here = self.lines[path]
                value = self.build(value_node, path)
                self.lines[path] = here
                for part in value if isinstance(value, list) else [value]:
                    if not isinstance(part, dict):
                        raise self._fail(value_node, "`<<` merges a mapping or a list of them")
                    merged = {**part, **merged}
                continue
            key = self.scalar(key_node)
            try:
                out[key] = self.build(value_node, (*path, key))
            except TypeError:  # an unhashable key such as a date in a set
                raise self._fail(key_node, "this key cannot be used") from None
        return {**merged, **out}


def load_yaml_limited(
    text: str,
    where: str = "<yaml>",
    *,
    env: Mapping[str, str] | None = None,
    lines: dict[tuple[Any, ...], int] | None = None,
    max_bytes: int = MAX_YAML_BYTES,
    max_aliases: int = MAX_YAML_ALIASES,
    max_nodes: int = MAX_YAML_NODES,
    max_depth: int = MAX_YAML_DEPTH,
) -> Any:
    """Read a YAML document like ``yaml.safe_load``, within bounds of size, aliases and values.

    Errors are one-line ``ConfigError``s, ``WHERE:LINE: what is wrong``. With ``env``,
    ``${NAME}`` / ``${NAME:-default}`` in strings are expanded; ``lines`` (when given) gets
    the line of every path. An empty document is ``None``.
    """
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise ConfigError(
            f"{where}: {size:,} bytes is more than the {max_bytes:,} a YAML file may have: refused"
        )
    loader = _CountingLoader(text, where, max_aliases)
    try:
        root = loader.get_single_node()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{where}{line}: not valid YAML: {problem}") from None
    except RecursionError:
        raise ConfigError(f"{where}: nested too deeply to read: refused") from None
    finally:
        loader.dispose()
    if root is None:
        return None
    builder = _Builder(where, env, {} if lines is None else lines, max_nodes, max_depth)
    return builder.build(root, ())
