"""Deployable artifacts: the AWS Lambda zip that ``logferry package lambda`` builds."""

from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import logferry
from logferry.errors import ConfigError, LogferryError

# The Lambda Python runtime ships these; bundling them only adds weight and version skew.
RUNTIME_PROVIDED = frozenset(
    {"boto3", "botocore", "s3transfer", "jmespath", "python-dateutil", "urllib3", "six"}
)
# Only a PostgreSQL ledger needs them (imported lazily by logferry.ledger).
POSTGRES = frozenset({"psycopg", "psycopg-binary", "psycopg-c", "psycopg-pool"})
UNZIPPED_LIMIT = 250 * 1024 * 1024  # Lambda: function code and layers, unzipped
DIRECT_UPLOAD_LIMIT = 50 * 1024 * 1024  # Lambda: a zip uploaded directly, not via S3
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # fixed timestamps: the same inputs give the same zip
ARCH_PLATFORM = {"x86_64": "x86_64", "arm64": "aarch64"}
# The Runtime in deploy/aws/template.yaml (python3.11 can no longer be created on Lambda).
DEFAULT_PYTHON = "3.13"


class PackageError(LogferryError):
    """The artifact cannot be built or would not deploy (exit 1)."""


@dataclass
class LambdaZip:
    """What ``build_lambda_zip`` wrote."""

    path: Path
    zipped_bytes: int
    unzipped_bytes: int
    files: int
    packages: dict[str, str] = field(default_factory=dict)
    left_out: list[str] = field(default_factory=list)


def normalize(name: str) -> str:
    """PEP 503 name normalization: ``Python_Dateutil`` -> ``python-dateutil``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    """The normalized distribution name a requirement string names."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    if not match:
        raise ConfigError(f"not a requirement: {requirement!r}")
    return normalize(match.group(1))


def declared_requirements() -> list[str]:
    """logferry's runtime requirements, from the source tree of the imported code if it has one.

    An editable install's metadata is frozen at install time; the pyproject.toml beside the
    code being packaged is what that code needs.
    """
    pyproject = Path(logferry.__file__).resolve().parents[2] / "pyproject.toml"
    if pyproject.is_file():
        with pyproject.open("rb") as f:
            project = tomllib.load(f).get("project", {})
        if project.get("name") == "logferry":
            return list(project.get("dependencies", []))
    try:
        requires = importlib.metadata.distribution("logferry").requires or []
    except importlib.metadata.PackageNotFoundError:
        raise ConfigError("cannot find logferry's requirements: install logferry first") from None
    return [r for r in requires if not re.search(r"\bextra\s*==", r.partition(";")[2])]


def runtime_requirements(*, postgres: bool = True, extra: tuple[str, ...] = ()) -> list[str]:
    """The requirements to bundle: logferry's, less what the runtime provides, plus ``extra``."""
    leave_out = RUNTIME_PROVIDED | (frozenset() if postgres else POSTGRES)
    for req in extra:
        requirement_name(req)  # a malformed --with fails here, not deep inside pip
    return [r for r in declared_requirements() if requirement_name(r) not in leave_out] + list(
        extra
    )


def pip_platforms(arch: str, python_version: str) -> list[str]:
    """Wheel platform tags the Lambda runtime for ``python_version`` on ``arch`` can load."""
    machine = ARCH_PLATFORM[arch]
    platforms = [f"manylinux2014_{machine}"]  # Amazon Linux 2: glibc 2.26
    if tuple(int(p) for p in python_version.split(".")) >= (3, 12):
        platforms.append(f"manylinux_2_28_{machine}")  # Amazon Linux 2023: glibc 2.34
    return platforms


def pip_install(target: Path, requirements: list[str], arch: str, python_version: str) -> None:
    """Install wheels for the Lambda platform into ``target``; raise PackageError on failure."""
    if not requirements:
        return
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    cmd += ["--target", str(target), "--no-compile", "--only-binary=:all:", "--implementation"]
    cmd += ["cp", "--python-version", python_version]
    for platform in pip_platforms(arch, python_version):
        cmd += ["--platform", platform]
    proc = subprocess.run(
        [*cmd, *requirements],
        capture_output=True,
        text=True,
        env={**os.environ, "PIP_ROOT_USER_ACTION": "ignore"},
    )
    if proc.returncode != 0:
        tail = [ln for ln in proc.stderr.splitlines() if ln.strip()][-3:]
        raise PackageError(
            f"pip could not install the requirements for {arch}/python{python_version}: "
            + (" / ".join(tail) or f"exit status {proc.returncode}")
        )


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


def prune(target: Path) -> list[str]:
    """Remove runtime-provided distributions pulled in transitively, scripts, caches and tests."""
    removed: list[str] = []
    root = target.resolve()
    for info in sorted(target.glob("*.dist-info")):
        name = _dist_name(info)
        if name not in RUNTIME_PROVIDED:
            continue
        removed.append(name)
        record = info / "RECORD"
        lines = record.read_text().splitlines() if record.is_file() else []
        for line in lines:
            path = (target / line.split(",")[0]).resolve()
            if path.is_relative_to(root) and path.is_file():
                path.unlink()
        shutil.rmtree(info, ignore_errors=True)
    shutil.rmtree(target / "bin", ignore_errors=True)  # console scripts: unusable on Lambda
    for path in sorted(target.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if path.is_dir() and (path.name in ("__pycache__", "tests") or not any(path.iterdir())):
            shutil.rmtree(path)
        elif path.suffix == ".pyc":
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


def build_lambda_zip(
    out: Path,
    *,
    arch: str = "x86_64",
    python_version: str = DEFAULT_PYTHON,
    postgres: bool = True,
    extra: tuple[str, ...] = (),
) -> LambdaZip:
    """Build the Lambda deployment zip at ``out``; refuse one over Lambda's unzipped limit."""
    if not re.fullmatch(r"3\.\d{1,2}", python_version):
        raise ConfigError(f"--python-version must look like 3.13, got {python_version!r}")
    if arch not in ARCH_PLATFORM:
        raise ConfigError(f"--arch must be one of {', '.join(ARCH_PLATFORM)}, got {arch!r}")
    if not out.parent.is_dir():
        raise ConfigError(f"{out.parent} is not a directory")
    requirements = runtime_requirements(postgres=postgres, extra=extra)
    with tempfile.TemporaryDirectory(prefix="logferry-lambda-") as tmp:
        stage = Path(tmp)
        pip_install(stage, requirements, arch, python_version)
        copy_logferry(stage)
        left_out = prune(stage)
        unzipped, files = tree_size(stage)
        if unzipped > UNZIPPED_LIMIT:
            raise PackageError(
                f"the package would be {unzipped / 2**20:.1f} MB unzipped, over Lambda's "
                f"{UNZIPPED_LIMIT / 2**20:.0f} MB limit: leave out what is not needed "
                "(--no-postgres) or ship it as a container image"
            )
        zipped = write_zip(stage, out)
        return LambdaZip(out, zipped, unzipped, files, _installed_versions(stage), left_out)
