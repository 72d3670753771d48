"""The component registry: discovery, lookup by scheme, errors, plugins, light imports."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

import logferry.sinks
from logferry import registry
from logferry.config import SinkOptions, SourceConfig
from logferry.errors import ConfigError
from logferry.ledger import open_ledger
from logferry.records import Batch
from logferry.sinks import check_sink, open_sink
from logferry.sources import is_stream_url, open_source, open_stream_source

REPO = Path(__file__).resolve().parents[1]

#: One URL per declared scheme; ``{tmp}`` is a fresh directory.
SOURCE_EXAMPLES = {
    "s3": "s3://bucket/prefix/",
    "cos": "cos://bucket/prefix/",
    "file": "file://{tmp}",
    "": "{tmp}",
    "tail": "tail://{tmp}/*.log",
    "cloudwatch": "cloudwatch:///aws/lambda/?streams=a,b",
}
SINK_EXAMPLES = {
    "mezmo+https": "mezmo+https://logs.example.com/logs/ingest",
    "mezmo+http": "mezmo+http://127.0.0.1:9/logs/ingest",
    "logdna+https": "logdna+https://logs.example.com",
    "logdna+http": "logdna+http://localhost:9",
    "logdna": "logdna:eu-de",
    "mezmo": "mezmo:private.us-south",
    "influxdb+http": "influxdb+http://127.0.0.1:8086/db",
    "influxdb+https": "influxdb+https://influx.example.com/db",
    "influxdb2+http": "influxdb2+http://localhost:8086/org/bucket",
    "influxdb2+https": "influxdb2+https://influx.example.com/org/bucket",
    "duckdb": "duckdb:///{tmp}/store.db",
    "file": "file://{tmp}/out",
    "": "{tmp}/plain",
    "stdout": "stdout:",
    "-": "-",
}
LEDGER_EXAMPLES = {
    "sqlite": "sqlite:///{tmp}/ledger.db",
    "": "{tmp}/plain-ledger.db",
    "postgresql": "postgresql://user@db.example.com:5432/logferry",
    "postgres": "postgres://user@db.example.com/logferry",
}


@pytest.fixture(autouse=True)
def _sink_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOGDNA_INGESTION_KEY", "registry-test-key")
    monkeypatch.setenv("INFLUXDB_TOKEN", "registry-test-token")


def _declared(kind: registry.Role) -> set[str]:
    return {s for c in registry.components(kind) for s in c.schemes}


def test_every_declared_scheme_has_an_example_here() -> None:
    assert _declared("source") == set(SOURCE_EXAMPLES)
    assert _declared("sink") == set(SINK_EXAMPLES)
    assert _declared("ledger") == set(LEDGER_EXAMPLES)


@pytest.mark.parametrize("scheme", sorted(SINK_EXAMPLES))
def test_every_sink_scheme_checks_and_opens(scheme: str, tmp_path: Path) -> None:
    url = SINK_EXAMPLES[scheme].format(tmp=tmp_path)
    assert scheme in registry.find(url, "sink").schemes
    check_sink(url)
    sink = open_sink(url, SinkOptions(hostname="h"))  # opening sends nothing over the network
    sink.close()


@pytest.mark.parametrize("scheme", sorted(SOURCE_EXAMPLES))
def test_every_source_scheme_checks_and_opens(scheme: str, tmp_path: Path) -> None:
    url = SOURCE_EXAMPLES[scheme].format(tmp=tmp_path)
    component = registry.check(url, "source")
    assert scheme in component.schemes
    if component.kind == "bucket":
        source = open_source(url, endpoint_url="http://127.0.0.1:9")
        assert not is_stream_url(url)
    else:
        source = open_stream_source(url, endpoint_url="http://127.0.0.1:9")  # type: ignore[assignment]
        assert is_stream_url(url)
    assert registry.kind_of(url) == component.kind
    source.close()


@pytest.mark.parametrize("scheme", sorted(LEDGER_EXAMPLES))
def test_every_ledger_scheme_is_declared(scheme: str, tmp_path: Path) -> None:
    url = LEDGER_EXAMPLES[scheme].format(tmp=tmp_path)
    component = registry.check(url, "ledger")
    assert scheme in component.schemes
    if component.name == "sqlite":
        registry.open(url, "ledger").close()


def test_components_by_kind() -> None:
    assert {c.name for c in registry.components("bucket")} == {"s3", "file"}
    assert {c.name for c in registry.components("stream")} == {"tail", "cloudwatch"}
    assert set(registry.components("source")) == {
        *registry.components("bucket"),
        *registry.components("stream"),
    }
    assert {"mezmo", "influxdb", "duckdb", "file", "stdout"} <= {
        c.name for c in registry.components("sink")
    }
    assert all(c.usage and c.summary for c in registry.components())


def test_kind_of() -> None:
    assert registry.kind_of("s3://b/p") == "bucket"
    assert registry.kind_of("cos:///") == "bucket"
    assert registry.kind_of("/var/log") == "bucket"
    assert registry.kind_of("tail:logs/*.log") == "stream"
    assert registry.kind_of("cloudwatch://grp") == "stream"
    with pytest.raises(ConfigError, match="unknown source"):
        registry.kind_of("kafka://broker/topic")


def _assert_lists_schemes(message: str, kind: registry.Role) -> None:
    for scheme in registry.schemes(kind):
        if scheme not in ("", "-"):
            assert f" {scheme}," in message or f" {scheme} (" in message


def test_unknown_sink_lists_the_schemes() -> None:
    with pytest.raises(ConfigError) as err:
        open_sink("kafka://broker/topic")
    assert "unknown sink 'kafka://broker/topic'" in str(err.value)
    _assert_lists_schemes(str(err.value), "sink")
    with pytest.raises(ConfigError) as err:
        check_sink("https://example.com/")
    _assert_lists_schemes(str(err.value), "sink")


def test_unknown_source_lists_the_schemes() -> None:
    with pytest.raises(ConfigError) as err:
        open_source("kafka://broker/topic")
    _assert_lists_schemes(str(err.value), "source")
    assert "a plain path" in str(err.value)
    with pytest.raises(ConfigError, match="unknown ledger"):
        registry.check("mysql://db/x", "ledger")


def test_source_kinds_are_kept_apart(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a stream source"):
        open_source("tail:///var/log/*.log")
    with pytest.raises(ConfigError, match=r"not a stream source URL.*tail:///GLOB"):
        open_stream_source(str(tmp_path))


def test_open_ledger_is_unchanged(tmp_path: Path) -> None:
    open_ledger(str(tmp_path / "l.db")).close()
    with pytest.raises(ConfigError, match="unknown ledger URL scheme"):
        open_ledger("mysql://db/x")


def test_source_config_types_come_from_the_registry(tmp_path: Path) -> None:
    assert SourceConfig(url="cos://b/p", type="cos").type == "cos"
    assert SourceConfig(url=str(tmp_path), type="file").type == "file"
    assert SourceConfig(url="tail:logs/*.log", type="tail").type == "tail"
    with pytest.raises(ValueError, match="does not match the URL"):
        SourceConfig(url="cos://b/p", type="s3")
    with pytest.raises(ValueError, match="does not match the URL"):
        SourceConfig(url=str(tmp_path), type="tail")
    with pytest.raises(ValueError, match=r"unknown source type 'kafka': use one of .*cloudwatch"):
        SourceConfig(url="s3://b", type="kafka")


# -- adding a component is adding one module ------------------------------------------

PLUGIN = '''
"""A sink that keeps lines in memory: declared here and nowhere else."""

import threading

from pydantic import BaseModel, ConfigDict

from logferry.errors import ConfigError
from logferry.registry import Component
from logferry.sinks.base import Sink

RECEIVED: list[str] = []


class MemoryOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    app: str = "logferry"


class MemorySink(Sink):
    name = "memory"

    def __init__(self, app: str) -> None:
        self.app = app

    def write(self, batch):
        RECEIVED.extend(f"{self.app}:{line}" for line in batch.lines)


def _check(url: str, options: MemoryOptions) -> None:
    if not url.startswith("memory://"):
        raise ConfigError("use memory://NAME")


def _open(url: str, options: MemoryOptions, *, stop: threading.Event | None = None) -> MemorySink:
    _check(url, options)
    return MemorySink(options.app)


COMPONENT = Component(
    name="memory", kind="sink", schemes=("memory",), options=MemoryOptions,
    check=_check, open=_open, usage="memory://NAME", summary="lines kept in memory",
)
'''


@pytest.fixture
def plugin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A directory added to ``logferry.sinks``' search path, as a new module file would be."""
    directory = tmp_path / "plugins"
    directory.mkdir()
    monkeypatch.setattr(logferry.sinks, "__path__", [*logferry.sinks.__path__, str(directory)])
    registry.reload()
    yield directory
    monkeypatch.undo()
    for name in [m for m in sys.modules if m.startswith("logferry.sinks.") and "memory" in m]:
        del sys.modules[name]
    registry.reload()


def test_a_new_sink_module_is_usable_without_editing_anything_else(plugin_dir: Path) -> None:
    with pytest.raises(ConfigError, match="unknown sink"):
        open_sink("memory://a")
    (plugin_dir / "memory_sink.py").write_text(textwrap.dedent(PLUGIN))
    registry.reload()

    check_sink("memory://a")
    sink = open_sink("memory://a", SinkOptions(app="demo"))
    sink.write(Batch(source="s", key="k", start=0, end=2, lines=["x", "y"], timestamps=[1, 2]))
    plugin = sys.modules["logferry.sinks.memory_sink"]
    assert plugin.RECEIVED == ["demo:x", "demo:y"]
    with pytest.raises(ConfigError, match=r"known schemes are .*\bmemory\b"):
        open_sink("nope://x")
    assert "memory" in [c.name for c in registry.components("sink")]


def test_two_components_may_not_claim_one_scheme(plugin_dir: Path) -> None:
    clash = PLUGIN.replace('schemes=("memory",)', 'schemes=("memory", "duckdb")')
    (plugin_dir / "memory_clash.py").write_text(textwrap.dedent(clash))
    registry.reload()
    with pytest.raises(RuntimeError, match="'duckdb' is declared by both"):
        registry.components()


def test_discovery_does_not_import_heavy_libraries(tmp_path: Path) -> None:
    code = textwrap.dedent(
        f"""
        import os, sys
        os.environ["LOGDNA_INGESTION_KEY"] = "k"
        from logferry import registry
        from logferry.sinks import check_sink
        from logferry.sources import is_stream_url
        from logferry.config import SourceConfig
        assert len(registry.components()) >= 10
        assert registry.kind_of("s3://bucket") == "bucket"
        registry.check("s3://bucket/p", "source")
        registry.check("cloudwatch://group", "source")
        check_sink("duckdb:///{tmp_path}/x.db")
        check_sink("logdna:eu-de")
        assert is_stream_url("tail:///x/*.log")
        SourceConfig(url="s3://b", type="s3")
        heavy = ("duckdb", "numpy", "boto3", "botocore")
        print(",".join(m for m in heavy if m in sys.modules))
        """
    )
    env = {"PYTHONPATH": str(REPO / "src"), "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""
