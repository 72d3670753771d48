"""Pipeline files are bounded: alias bombs, huge and deeply nested documents are refused fast.

Before the fix a 1 KB pipeline with nine levels of ``&a``/``*a`` ran 60 s at 428 MB.
"""

from __future__ import annotations

import resource
import time
from pathlib import Path

import pytest

from logferry.config import parse_pipeline
from logferry.errors import ConfigError
from logferry.yamlfile import MAX_YAML_ALIASES, MAX_YAML_BYTES, MAX_YAML_NODES, load_yaml_limited
from tests.conftest import run_cli

VALID = "sinks: {out: {url: '-'}}\nsources: {s: {url: /tmp, sinks: [out]}}\n"


def billion_laughs(levels: int = 9) -> str:
    """The classic: each level nine aliases of the one before (9**9 values once expanded)."""
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels + 1):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    return VALID + "\n".join(lines) + "\n"


def test_alias_bomb_is_refused_in_milliseconds_with_a_line() -> None:
    text = billion_laughs()
    assert len(text) < 1024
    began = time.monotonic()
    with pytest.raises(ConfigError) as info:
        parse_pipeline(text, "bomb.yaml", {})
    assert time.monotonic() - began < 1
    message = str(info.value)
    assert message.startswith("bomb.yaml:") and "\n" not in message
    assert f"more than {MAX_YAML_NODES:,} values once aliases are expanded" in message


def test_too_many_alias_uses_are_refused_at_the_alias() -> None:
    uses = "\n".join(f"k{i}: *x" for i in range(MAX_YAML_ALIASES + 1))
    with pytest.raises(ConfigError, match=rf"^c.yaml:{MAX_YAML_ALIASES + 4}: more than 100"):
        load_yaml_limited(f"{VALID}x: &x 1\n{uses}\n", "c.yaml")


def test_a_few_aliases_and_merge_keys_still_work() -> None:
    text = (
        "sinks: {out: &sink {url: '-', app: shared}, other: {<<: *sink, app: mine}}\n"
        "sources:\n"
        "  a: {url: /tmp/a, sinks: &both [out, other]}\n"
        "  b: {url: /tmp/b, sinks: *both}\n"
    )
    config = parse_pipeline(text, "ok.yaml", {})
    assert config.sinks["other"].app == "mine" and config.sinks["other"].url == "-"
    assert config.sources["b"].sinks == ["out", "other"]


def test_large_and_deep_documents_are_refused() -> None:
    big = VALID + "# " + "x" * MAX_YAML_BYTES + "\n"
    with pytest.raises(ConfigError, match=r"big\.yaml: .* bytes is more than the 1,048,576"):
        parse_pipeline(big, "big.yaml", {})
    with pytest.raises(ConfigError, match=r"deep\.yaml: nested too deeply to read"):
        load_yaml_limited("x: " + "[" * 100_000 + "]" * 100_000, "deep.yaml")
    with pytest.raises(ConfigError, match=r"deep.yaml:1: nested more than 64 levels deep"):
        load_yaml_limited("x: " + "[" * 200 + "]" * 200, "deep.yaml")


def test_load_yaml_limited_reads_like_safe_load() -> None:
    text = "a: 1\nb: [yes, ~, 2020-01-01, '${X}']\nc: {d: 1.5}\n"
    assert load_yaml_limited(text) == {
        "a": 1,
        "b": [True, None, __import__("datetime").date(2020, 1, 1), "${X}"],
        "c": {"d": 1.5},
    }
    assert load_yaml_limited("# nothing\n") is None
    with pytest.raises(ConfigError, match=r"^o.yaml:1: a key must be a plain value"):
        load_yaml_limited("? [a]\n: 1\n", "o.yaml")
    with pytest.raises(ConfigError, match=r"^o.yaml:1: not a valid value"):
        load_yaml_limited("a: !!python/object:os.system x\n", "o.yaml")


def test_validate_and_run_refuse_the_bomb_with_one_line(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(billion_laughs())
    big = tmp_path / "big.yaml"
    big.write_bytes(VALID.encode() + b"#" * (MAX_YAML_BYTES + 10))
    for path in (bomb, big):
        for command in (["validate", "-c", str(path)], ["run", "--once", "-c", str(path)]):
            began = time.monotonic()
            p = run_cli(*command, timeout=30)
            assert p.returncode == 2, p.stderr
            assert time.monotonic() - began < 15  # interpreter start-up included
            assert "Traceback" not in p.stderr and len(p.stderr.strip().splitlines()) == 1
            assert p.stderr.startswith(f"error: {path}")


def test_the_bomb_costs_little_memory() -> None:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ConfigError):
        parse_pipeline(billion_laughs(), "bomb.yaml", {})
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 50 * 1024  # it used 428 MB before the limits
