"""Deployable artifacts: the AWS Lambda zip and the single-file executable (``logferry package``).

Both bundle only what the pipeline they are built for needs: logferry's core requirements,
plus the extras its sinks and sources need (a ``duckdb://`` sink: ``store``), plus the
PostgreSQL driver when its ledger is PostgreSQL. Versions come from the constraints file
(``deploy/constraints.txt``, written by :func:`lock`), so a build is reproducible.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import logferry
from logferry.config import PipelineConfig
from logferry.errors import ConfigError, LogferryError
from logferry.extras import EXTRAS, require

# The Lambda Python runtime ships these; bundling them only adds weight and version skew.
RUNTIME_PROVIDED = frozenset(
    {"boto3", "botocore", "s3transfer", "jmespath", "python-dateutil", "urllib3", "six"}
)
# Only a PostgreSQL ledger needs them (imported lazily by logferry.ledger).
POSTGRES = frozenset({"psycopg", "psycopg-binary", "psycopg-c", "psycopg-pool"})
# Only the CLI imports them; the Lambda handler never does (the handler test runs without).
CLI_ONLY = frozenset({"click", "rich", "pygments", "markdown-it-py", "mdurl"})
# Files no import reaches: zstandard's CFFI backend needs cffi, which is not installed.
DEAD_FILES = (re.compile(r"zstandard/(_cffi\..*\.so|backend_cffi\.py)$"),)
# Components that need an extra (by component name, as logferry.registry declares them).
COMPONENT_EXTRAS = {"duckdb": "store", "tail": "tail"}
UNZIPPED_LIMIT = 250 * 1024 * 1024  # Lambda: function code and layers, unzipped
DIRECT_UPLOAD_LIMIT = 50 * 1024 * 1024  # Lambda: a zip uploaded directly, not via S3
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # fixed timestamps: the same inputs give the same zip
ARCH_PLATFORM = {"x86_64": "x86_64", "arm64": "aarch64"}
# The Runtime in deploy/aws/template.yaml (python3.11 can no longer be created on Lambda).
DEFAULT_PYTHON = "3.13"
# Pythons the constraints file is resolved for: Lambda's, and the zipapp's system Pythons.
LOCK_PYTHONS = ("3.11", "3.12", "3.13")
LOCK_HEADER = """\
# Versions that `logferry package lambda|zipapp` and `logferry deploy aws` bundle, for every
# extra, Python {pythons} and x86_64/arm64. Regenerate after changing the requirements in
# pyproject.toml, or to take newer releases, with:
#   logferry package lock
# (resolves from PyPI, wheels only), then rebuild, run tests/cli/test_package.py and commit.
"""


class PackageError(LogferryError):
    """The artifact cannot be built or would not deploy (exit 1)."""


@dataclass
class Needs:
    """What a pipeline needs bundled beside logferry's core requirements, and why."""

    extras: set[str] = field(default_factory=set)
    postgres: bool = True
    reasons: list[str] = field(default_factory=list)


@dataclass
class Built:
    """What ``build_lambda_zip`` or ``build_zipapp`` wrote."""

    path: Path
    zipped_bytes: int
    unzipped_bytes: int
    files: int
    packages: dict[str, str] = field(default_factory=dict)
    left_out: list[str] = field(default_factory=list)
    extras: list[str] = field(default_factory=list)
    unpinned: list[str] = field(default_factory=list)


def normalize(name: str) -> str:
    """PEP 503 name normalization: ``Python_Dateutil`` -> ``python-dateutil``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    """The normalized distribution name a requirement string names."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    if not match:
        raise ConfigError(f"not a requirement: {requirement!r}")
    return normalize(match.group(1))


def source_tree() -> Path | None:
    """The checkout the imported logferry comes from (None for an installed wheel)."""
    root = Path(logferry.__file__).resolve().parents[2]
    return root if (root / "pyproject.toml").is_file() and (root / "deploy").is_dir() else None


def deploy_file(relative: str) -> Path:
    """A file under the checkout's ``deploy/`` folder; ConfigError if there is none."""
    root = source_tree()
    if root is None or not (root / "deploy" / relative).is_file():
        raise ConfigError(
            f"deploy/{relative} not found: run logferry from a checkout of its repository "
            "(pip install -e .), or pass the file's path"
        )
    return root / "deploy" / relative


def _project() -> dict[str, object] | None:
    root = source_tree()
    if root is None:
        return None
    with (root / "pyproject.toml").open("rb") as f:
        project = tomllib.load(f).get("project", {})
    return project if project.get("name") == "logferry" else None


def declared_requirements(extras: Iterable[str] = ()) -> list[str]:
    """logferry's runtime requirements plus those of ``extras``, from the source tree if any.

    An editable install's metadata is frozen at install time; the pyproject.toml beside the
    code being packaged is what that code needs.
    """
    extras = sorted(set(extras))
    unknown = [e for e in extras if e not in EXTRAS]
    if unknown:
        raise ConfigError(f"unknown extra {unknown[0]!r}: use one of {', '.join(sorted(EXTRAS))}")
    project = _project()
    if project is not None:
        optional = project.get("optional-dependencies", {})
        assert isinstance(optional, dict)
        reqs = list(project.get("dependencies", []))  # type: ignore[call-overload]
        for extra in extras:
            reqs += [r for r in optional.get(extra, []) if r not in reqs]
        return reqs
    try:
        requires = importlib.metadata.distribution("logferry").requires or []
    except importlib.metadata.PackageNotFoundError:
        raise ConfigError("cannot find logferry's requirements: install logferry first") from None
    reqs = []
    for req in requires:
        spec, _, marker = req.partition(";")
        wanted = re.search(r"\bextra\s*==\s*['\"]([\w-]+)['\"]", marker)
        if (wanted is None or wanted.group(1) in extras) and spec.strip() not in reqs:
            reqs.append(spec.strip())
    return reqs


def needs_of(config: PipelineConfig | None, ledger: str | None = None) -> Needs:
    """The extras (and whether the PostgreSQL driver) the pipeline ``config`` needs.

    ``ledger`` is the ledger URL the deployment will use when the file does not name one
    (``LOGFERRY_LEDGER``, the template's ``LedgerUrl``). Unknown: PostgreSQL is bundled, as
    a serverless ledger must outlive one execution environment.
    """
    from logferry import registry

    needs = Needs()
    if config is not None:
        urls = [(f"sink {name!r}", c.url, "sink") for name, c in config.sinks.items() if c.url]
        urls += [(f"source {name!r}", s.url, "source") for name, s in config.sources.items()]
        for what, url, role in urls:
            component = registry.lookup(url, role)  # type: ignore[arg-type]
            extra = COMPONENT_EXTRAS.get(component.name) if component else None
            if extra:
                needs.extras.add(extra)
                needs.reasons.append(f"{what} ({component.name}) needs logferry[{extra}]")  # type: ignore[union-attr]
        ledger = config.ledger or ledger
    if ledger:
        needs.postgres = ledger.lower().startswith(("postgresql:", "postgres:"))
        if needs.postgres:
            needs.reasons.append("the PostgreSQL ledger needs psycopg")
    return needs


def read_constraints(path: Path) -> dict[str, str]:
    """``name==version`` lines of a constraints file, by normalized name."""
    pins = {}
    for line in path.read_text().splitlines():
        line = line.partition("#")[0].strip()
        if line:
            name, sep, version = line.partition("==")
            if not sep:
                raise ConfigError(f"{path}: only name==version lines are allowed, got {line!r}")
            pins[normalize(name)] = version.strip()
    return pins


def default_constraints() -> Path | None:
    """``deploy/constraints.txt`` of the checkout, when there is one."""
    root = source_tree()
    path = root / "deploy" / "constraints.txt" if root else None
    return path if path is not None and path.is_file() else None


def pip_platforms(arch: str, python_version: str) -> list[str]:
    """Wheel platform tags the Lambda runtime for ``python_version`` on ``arch`` can load."""
    machine = ARCH_PLATFORM[arch]
    platforms = [f"manylinux2014_{machine}"]  # Amazon Linux 2: glibc 2.26
    if tuple(int(p) for p in python_version.split(".")) >= (3, 12):
        platforms.append(f"manylinux_2_28_{machine}")  # Amazon Linux 2023: glibc 2.34
    return platforms


def _pip(args: list[str], what: str) -> None:
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    proc = subprocess.run(
        [*cmd, *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PIP_ROOT_USER_ACTION": "ignore"},
    )
    if proc.returncode != 0:
        tail = [ln for ln in proc.stderr.splitlines() if ln.strip()][-3:]
        raise PackageError(
            f"pip could not install the requirements for {what}: "
            + (" / ".join(tail) or f"exit status {proc.returncode}")
        )


def _target_args(target: Path, platforms: list[str], python_version: str) -> list[str]:
    args = ["--target", str(target), "--no-compile", "--only-binary=:all:"]
    args += ["--implementation", "cp", "--python-version", python_version]
    for platform in platforms:
        args += ["--platform", platform]
    return args


def pip_install(
    target: Path,
    requirements: list[str],
    arch: str,
    python_version: str,
    constraints: Path | None = None,
    platforms: list[str] | None = None,
) -> None:
    """Install wheels for the platform into ``target``; raise PackageError on failure.

    ``platforms``: wheel platform tags (default: the Lambda ones for ``arch``).
    """
    if not requirements:
        return
    tags = pip_platforms(arch, python_version) if platforms is None else platforms
    args = _target_args(target, tags, python_version)
    if constraints is not None:
        args += ["--constraint", str(constraints)]
    _pip([*args, *requirements], f"{arch}/python{python_version}")


def copy_logferry(target: Path) -> None:
    """Copy the imported logferry package (not its tests or caches) and a minimal dist-info."""
    source = Path(logferry.__file__).resolve().parent
    shutil.copytree(
        source, target / "logferry", ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
    )
    version = logferry.__version__
    info = target / f"logferry-{version}.dist-info"
    info.mkdir()
    requires = "".join(f"Requires-Dist: {r}\n" for r in declared_requirements())
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: logferry\nVersion: {version}\n{requires}"
    )
    (info / "top_level.txt").write_text("logferry\n")


def _dist_name(info: Path) -> str:
    for line in (info / "METADATA").read_text(errors="replace").splitlines():
        if line.startswith("Name:"):
            return normalize(line.partition(":")[2].strip())
    return normalize(info.name.split("-")[0])


def prune(target: Path, leave_out: frozenset[str] = RUNTIME_PROVIDED) -> list[str]:
    """Remove the ``leave_out`` distributions (pulled in transitively), scripts, caches, tests
    and files nothing imports; return the names of the distributions removed."""
    removed: list[str] = []
    root = target.resolve()
    for info in sorted(target.glob("*.dist-info")):
        name = _dist_name(info)
        if name not in leave_out:
            continue
        removed.append(name)
        record = info / "RECORD"
        lines = record.read_text().splitlines() if record.is_file() else []
        for line in lines:
            path = (target / line.split(",")[0]).resolve()
            if path.is_relative_to(root) and path.is_file():
                path.unlink()
        shutil.rmtree(info, ignore_errors=True)
    shutil.rmtree(target / "bin", ignore_errors=True)  # console scripts: unusable here
    for path in sorted(target.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        relative = path.relative_to(target).as_posix()
        if path.is_dir() and (path.name in ("__pycache__", "tests") or not any(path.iterdir())):
            shutil.rmtree(path)
        elif path.suffix == ".pyc" or any(p.search(relative) for p in DEAD_FILES):
            path.unlink()
    return removed


def tree_size(root: Path) -> tuple[int, int]:
    """Total bytes and number of files under ``root``."""
    sizes = [p.stat().st_size for p in root.rglob("*") if p.is_file()]
    return sum(sizes), len(sizes)


def write_zip(root: Path, out: Path) -> int:
    """Write ``root`` as a deterministic zip (sorted entries, fixed times and modes) to ``out``."""
    tmp = out.with_name(out.name + ".partial")
    files = sorted((p.relative_to(root).as_posix(), p) for p in root.rglob("*") if p.is_file())
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
        for name, path in files:
            executable = path.stat().st_mode & stat.S_IXUSR
            info = zipfile.ZipInfo(name, ZIP_EPOCH)
            info.external_attr = (stat.S_IFREG | (0o755 if executable else 0o644)) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, path.read_bytes(), compresslevel=6)
    tmp.replace(out)
    return out.stat().st_size


def _installed_versions(target: Path) -> dict[str, str]:
    versions = {}
    for info in target.glob("*.dist-info"):
        name, _, rest = info.name.removesuffix(".dist-info").partition("-")
        versions[normalize(name)] = rest
    return dict(sorted(versions.items()))


def _unpinned(packages: Mapping[str, str], constraints: Path | None) -> list[str]:
    pins = read_constraints(constraints) if constraints else {}
    return sorted(
        f"{name} {version}" for name, version in packages.items()
        if name != "logferry" and pins.get(name) != version
    )  # fmt: skip


def _check_args(arch: str, python_version: str, out: Path) -> None:
    if not re.fullmatch(r"3\.\d{1,2}", python_version):
        raise ConfigError(f"--python-version must look like 3.13, got {python_version!r}")
    if arch not in ARCH_PLATFORM:
        raise ConfigError(f"--arch must be one of {', '.join(ARCH_PLATFORM)}, got {arch!r}")
    if not out.parent.is_dir():
        raise ConfigError(f"{out.parent} is not a directory")


def _requirements(needs: Needs, extra: tuple[str, ...], leave_out: frozenset[str]) -> list[str]:
    for req in extra:
        requirement_name(req)  # a malformed --with fails here, not deep inside pip
    if not needs.postgres:
        leave_out |= POSTGRES
    declared = declared_requirements(needs.extras)
    return [r for r in declared if requirement_name(r) not in leave_out] + list(extra)


def runtime_requirements(
    *, postgres: bool = True, extra: tuple[str, ...] = (), extras: Iterable[str] = ()
) -> list[str]:
    """The requirements of a Lambda zip: logferry's and ``extras``', less what the runtime
    provides and what only the CLI uses, plus ``extra``."""
    needs = Needs(extras=set(extras), postgres=postgres)
    return _requirements(needs, extra, RUNTIME_PROVIDED | CLI_ONLY)


def build_lambda_zip(
    out: Path,
    *,
    arch: str = "x86_64",
    python_version: str = DEFAULT_PYTHON,
    postgres: bool = True,
    extra: tuple[str, ...] = (),
    extras: Iterable[str] = (),
    constraints: Path | None = None,
) -> Built:
    """Build the Lambda deployment zip at ``out``; refuse one over Lambda's unzipped limit."""
    _check_args(arch, python_version, out)
    extras = sorted(set(extras))
    requirements = runtime_requirements(postgres=postgres, extra=extra, extras=extras)
    with tempfile.TemporaryDirectory(prefix="logferry-lambda-") as tmp:
        stage = Path(tmp)
        pip_install(stage, requirements, arch, python_version, constraints)
        copy_logferry(stage)
        left_out = prune(stage, RUNTIME_PROVIDED | CLI_ONLY)
        unzipped, files = tree_size(stage)
        if unzipped > UNZIPPED_LIMIT:
            raise PackageError(
                f"the package would be {unzipped / 2**20:.1f} MB unzipped, over Lambda's "
                f"{UNZIPPED_LIMIT / 2**20:.0f} MB limit: leave out what is not needed "
                "(--no-postgres, fewer --extra) or ship it as a container image"
            )
        zipped = write_zip(stage, out)
        packages = _installed_versions(stage)
        return Built(
            out, zipped, unzipped, files, packages, left_out, extras,
            _unpinned(packages, constraints) if constraints else [],
        )  # fmt: skip


def build_zipapp(
    out: Path,
    *,
    python_version: str | None = None,
    interpreter: str = "/usr/bin/env python3",
    postgres: bool = True,
    extra: tuple[str, ...] = (),
    extras: Iterable[str] = (),
    constraints: Path | None = None,
) -> Built:
    """Build a single-file executable (a shiv zipapp) of the ``logferry`` command at ``out``.

    Native wheels are for this machine's platform and ``python_version`` (default: the
    running one); it runs with that Python, no virtual environment needed. On first run it
    unpacks to ``~/.shiv`` (``SHIV_ROOT``).
    """
    require("package", "shiv")
    python_version = python_version or f"{sys.version_info.major}.{sys.version_info.minor}"
    machine = os.uname().machine
    _check_args("arm64" if machine == "aarch64" else "x86_64", python_version, out)
    extras = sorted(set(extras))
    needs = Needs(extras=set(extras), postgres=postgres)
    requirements = _requirements(needs, extra, frozenset())
    with tempfile.TemporaryDirectory(prefix="logferry-zipapp-") as tmp:
        stage = Path(tmp) / "site-packages"
        stage.mkdir()
        platforms = [f"manylinux2014_{machine}", f"manylinux_2_28_{machine}"]
        pip_install(stage, requirements, machine, python_version, constraints, platforms)
        copy_logferry(stage)
        left_out = prune(stage, frozenset())
        unzipped, files = tree_size(stage)
        packages = _installed_versions(stage)
        tmp_out = out.with_name(out.name + ".partial")
        cmd = [sys.executable, "-m", "shiv", "--site-packages", str(stage), "--reproducible"]
        cmd += ["--compressed", "-e", "logferry.cli.main:main", "-p", interpreter]
        cmd += ["-o", str(tmp_out)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            tail = [ln for ln in proc.stderr.splitlines() if ln.strip()][-2:]
            raise PackageError("shiv could not build the zipapp: " + " / ".join(tail))
        tmp_out.replace(out)
        return Built(
            out, out.stat().st_size, unzipped, files, packages, left_out, extras,
            _unpinned(packages, constraints) if constraints else [],
        )  # fmt: skip


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", version))


def _resolve(requirements: list[str], constraints: Path | None, tmp: Path) -> dict[str, str]:
    """Versions pip picks for ``requirements`` on every Lambda platform and LOCK_PYTHONS,
    the lowest where platforms differ (a release without wheels for one of them)."""
    pins: dict[str, str] = {}
    for python_version in LOCK_PYTHONS:
        for arch in ARCH_PLATFORM:
            report = tmp / f"{arch}-{python_version}.json"
            args = ["--dry-run", "--ignore-installed", "--report", str(report)]
            # Amazon Linux 2023's tags for every Python: the zipapp's Pythons are as recent.
            tags = pip_platforms(arch, DEFAULT_PYTHON)
            args += _target_args(tmp / "t", tags, python_version)
            if constraints is not None:
                args += ["--constraint", str(constraints)]
            _pip([*args, *requirements], f"{arch}/python{python_version}")
            for item in json.loads(report.read_text())["install"]:
                name, version = normalize(item["metadata"]["name"]), item["metadata"]["version"]
                pins[name] = min(pins.get(name, version), version, key=_version_key)
    return dict(sorted(pins.items()))


def lock(out: Path) -> dict[str, str]:
    """Resolve every requirement and extra for Lambda's platforms and the zipapp's Pythons;
    write the pins to ``out`` (a pip constraints file) and return them."""
    requirements = declared_requirements(EXTRAS)
    with tempfile.TemporaryDirectory(prefix="logferry-lock-") as tmp:
        pins = _resolve(requirements, None, Path(tmp))
        # Check that the pins resolve together everywhere (pip fails if one does not).
        draft = Path(tmp) / "constraints.txt"
        draft.write_text("".join(f"{n}=={v}\n" for n, v in pins.items()))
        if _resolve(requirements, draft, Path(tmp)) != pins:
            raise PackageError("the pinned versions do not resolve alike on every platform")
    header = LOCK_HEADER.format(pythons="/".join(LOCK_PYTHONS))
    out.write_text(header + "".join(f"{n}=={v}\n" for n, v in pins.items()))
    return pins
