"""examples/deploy/: the systemd unit and the Kubernetes manifests run `logferry worker` with
flags the CLI accepts, wire its health checks to its metrics port, stop within their grace
period, and keep secrets out of the files."""

from __future__ import annotations

import configparser
import re
import shlex
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from logferry.cli.main import cli
from tests.examples.test_examples import EXAMPLES, _env, _logferry

DEPLOY = EXAMPLES / "deploy"
UNIT = DEPLOY / "logferry-worker.service"
KUBE = DEPLOY / "kubernetes" / "worker-deployment.yaml"
#: Every file under examples/deploy/ and the test that covers it.
DEPLOY_FILES = {
    "logferry-worker.service": "test_unit_runs_a_worker_the_cli_accepts",
    "kubernetes/worker-deployment.yaml": "test_probes_use_the_metrics_port",
}
#: `logferry worker`'s options as issue 14 specifies them, with the daemon options `logferry
#: run` has. Used only while the worker command is not in this checkout; once it is, the
#: command's own click parser checks the arguments instead.
WORKER_OPTIONS = {
    "--queue": True,
    "--config": True,
    "-c": True,
    "--ledger": True,
    "--concurrency": True,
    "--processes": True,
    "--metrics-port": True,
    "--metrics-host": True,
    "--shutdown-timeout": True,
    "--log-format": True,
    "--quiet": False,
    "-q": False,
    "--verbose": False,
    "-v": False,
}
#: What a value from the environment stands for when the arguments are parsed.
SAMPLE_ENV = {
    "LOGFERRY_QUEUE": "https://sqs.us-east-1.amazonaws.com/123456789012/flowlogs",
    "LOGFERRY_PROCESSES": "2",
}


def _unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # systemd keys are CamelCase
    parser.read_string(UNIT.read_text())
    return parser


def _exec_start() -> list[str]:
    value = _unit()["Service"]["ExecStart"]
    return shlex.split(value.replace("\\\n", " "))


def _flag_value(args: list[str], flag: str) -> str:
    assert flag in args, f"{flag} missing from {args}"
    return args[args.index(flag) + 1]


def _expand(args: list[str], config: Path) -> list[str]:
    """``args`` with ${VAR} / $(VAR) replaced by samples and --config by a real file."""
    out = [re.sub(r"\$[{(](\w+)[})]", lambda m: SAMPLE_ENV[m.group(1)], a) for a in args]
    out[out.index("--config") + 1] = str(config)
    return out


def check_worker_args(args: list[str], config: Path) -> None:
    """Parse ``args`` (after ``worker``) as `logferry worker` would, without running it."""
    args = _expand(args, config)
    command = cli.commands.get("worker")
    if command is not None:
        # The real command: its click parser converts and checks every value.
        command.make_context("worker", list(args))
        return
    i = 0
    while i < len(args):
        name = args[i].split("=", 1)[0]
        assert name in WORKER_OPTIONS, f"`logferry worker` has no option {name}"
        i += 2 if WORKER_OPTIONS[name] and "=" not in args[i] else 1
    assert i == len(args), f"{args[-1]} needs a value"


def test_check_worker_args_refuses_an_unknown_flag(tmp_path: Path) -> None:
    config = tmp_path / "p.yaml"
    config.write_text("sources: {}\n")
    with pytest.raises((AssertionError, click.UsageError)):
        check_worker_args(["--config", "x", "--no-such-flag", "1"], config)


def test_every_deploy_file_is_tested() -> None:
    found = {p.relative_to(DEPLOY).as_posix() for p in DEPLOY.rglob("*") if p.is_file()}
    assert found == set(DEPLOY_FILES)


# -- systemd --------------------------------------------------------------------------------


def test_unit_runs_a_worker_the_cli_accepts() -> None:
    args = _exec_start()
    assert Path(args[0]).name == "logferry"
    assert args[1] == "worker"
    # The unit's comment installs examples/s3-to-mezmo.yaml as its pipeline file.
    check_worker_args(args[2:], EXAMPLES / "s3-to-mezmo.yaml")


def test_unit_stops_gracefully_before_systemd_kills_it() -> None:
    service = _unit()["Service"]
    args = _exec_start()
    assert service["KillSignal"] == "SIGTERM"
    assert service["KillMode"] == "mixed"  # the supervisor of --processes stops its copies
    assert float(service["TimeoutStopSec"]) > float(_flag_value(args, "--shutdown-timeout"))
    assert service["Restart"] == "on-failure"


def test_metrics_port_serves_one_process() -> None:
    """`--metrics-port` with `--processes` 2 or more is a usage error (cli/processes.py)."""
    unit = _exec_start()
    assert "--processes" in unit
    assert "--metrics-port" not in unit
    pod = _container()["args"]
    assert "--metrics-port" in pod
    assert "--processes" not in pod or _flag_value(pod, "--processes") == "1"


def test_unit_keeps_the_ledger_url_in_its_environment_file() -> None:
    service = _unit()["Service"]
    assert service["EnvironmentFile"] == "/etc/logferry/worker.env"
    assert "--ledger" not in _exec_start()  # LOGFERRY_LEDGER: not visible in `ps`
    assert "LOGFERRY_LEDGER=postgresql://" in UNIT.read_text()  # documented in the comment


def test_unit_environment_names_every_variable_it_uses() -> None:
    used = set(re.findall(r"\$\{(\w+)\}", _unit()["Service"]["ExecStart"]))
    documented = set(re.findall(r"^#\s+(\w+)=", UNIT.read_text(), re.M))
    defaults = {kv.split("=", 1)[0] for kv in _unit()["Service"]["Environment"].split()}
    assert used <= documented | defaults


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("DynamicUser", "yes"),
        ("CapabilityBoundingSet", ""),
        ("SystemCallFilter", "@system-service"),
    ],
)
def test_unit_is_hardened(key: str, value: str) -> None:
    assert _unit()["Service"][key] == value


# -- Kubernetes -----------------------------------------------------------------------------


def _docs() -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(KUBE.read_text()) if d is not None]


def _of_kind(kind: str) -> dict[str, Any]:
    (doc,) = [d for d in _docs() if d["kind"] == kind]
    return doc


def _container() -> dict[str, Any]:
    (container,) = _of_kind("Deployment")["spec"]["template"]["spec"]["containers"]
    return container


def test_manifests_are_the_documented_kinds() -> None:
    assert [d["kind"] for d in _docs()] == ["ConfigMap", "ServiceAccount", "Deployment"]


def test_container_runs_a_worker_the_cli_accepts(tmp_path: Path) -> None:
    args = _container()["args"]
    assert args[0] == "worker"
    config = tmp_path / "pipeline.yaml"
    config.write_text(_of_kind("ConfigMap")["data"]["pipeline.yaml"])
    check_worker_args(args[1:], config)


def test_configmap_pipeline_validates(tmp_path: Path) -> None:
    """The ConfigMap's pipeline.yaml passes `logferry validate`, with the pod's environment."""
    config = tmp_path / "pipeline.yaml"
    config.write_text(_of_kind("ConfigMap")["data"]["pipeline.yaml"])
    values = {e["name"]: e["value"] for e in _container()["env"] if "value" in e}
    proc = _logferry(["validate", "-c", str(config)], _env(tmp_path, **values), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr + proc.stdout


def test_configmap_is_mounted_where_the_worker_reads_it() -> None:
    container = _container()
    config = Path(_flag_value(container["args"], "--config"))
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == "pipeline"]
    assert mount["mountPath"] == str(config.parent)
    volumes = _of_kind("Deployment")["spec"]["template"]["spec"]["volumes"]
    (volume,) = [v for v in volumes if v["name"] == "pipeline"]
    assert volume["configMap"]["name"] == _of_kind("ConfigMap")["metadata"]["name"]
    assert config.name in _of_kind("ConfigMap")["data"]


def test_probes_use_the_metrics_port() -> None:
    container = _container()
    port = int(_flag_value(container["args"], "--metrics-port"))
    assert _flag_value(container["args"], "--metrics-host") == "0.0.0.0"  # the kubelet's probes
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": port}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port}
    assert container["ports"][0]["containerPort"] == port


def test_prometheus_scrapes_the_metrics_port() -> None:
    annotations = _of_kind("Deployment")["spec"]["template"]["metadata"]["annotations"]
    port = _flag_value(_container()["args"], "--metrics-port")
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == port
    assert annotations["prometheus.io/path"] == "/metrics"


def test_grace_period_outlasts_the_shutdown_timeout() -> None:
    spec = _of_kind("Deployment")["spec"]["template"]["spec"]
    timeout = float(_flag_value(_container()["args"], "--shutdown-timeout"))
    assert spec["terminationGracePeriodSeconds"] > timeout


def test_container_has_resources() -> None:
    resources = _container()["resources"]
    assert resources["requests"]["cpu"]
    assert resources["requests"]["memory"]
    assert resources["limits"]["memory"]


def test_no_secret_is_inline() -> None:
    """Credentials come from a Secret or the service account, never from the manifest."""
    env = {e["name"]: e for e in _container()["env"]}
    for name in ("LOGFERRY_LEDGER", "LOGDNA_INGESTION_KEY"):
        assert "value" not in env[name], name
        assert env[name]["valueFrom"]["secretKeyRef"]["name"] == "logferry", name
    for name, entry in env.items():
        assert not re.search(r"KEY|SECRET|TOKEN|PASSWORD", name) or "value" not in entry, name
        assert "://" not in entry.get("value", "") or "@" not in entry["value"], name
    assert "Secret" not in [d["kind"] for d in _docs()]
