"""Validated options for a shipping run (pydantic), shared by the CLI and the library."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from logferry.errors import ConfigError

Mode = Literal["catchup", "key", "latest", "all"]
"""catchup: everything not done; key: the objects named in ``keys``; latest: the N newest
not done; all: everything again."""

MiB = 1024 * 1024


class ShipOptions(BaseModel):
    """How one ``ship`` run reads, batches and claims objects."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Mode = "catchup"
    keys: tuple[str, ...] = ()
    latest: int | None = Field(default=None, ge=1)
    format: str = "auto"
    expand: str | None = None
    timestamp_fields: tuple[str, ...] = ("timestamp", "@timestamp", "time", "ts")
    max_document_bytes: int = Field(default=256 * MiB, ge=1024)
    workers: int = Field(default=4, ge=1, le=64)
    batch_lines: int = Field(default=10_000, ge=1)
    batch_bytes: int = Field(default=2 * MiB, ge=1024)
    batch_wait: float = Field(default=1.0, gt=0)
    lease_seconds: float = Field(default=120.0, ge=1)
    read_chunk: int = Field(default=MiB, ge=4096)
    force: bool = False
    max_attempts: int = Field(default=5, ge=1)
    retry_delay: float = Field(default=2.0, ge=0)

    @model_validator(mode="after")
    def _mode_arguments(self) -> ShipOptions:
        if self.mode == "key" and not self.keys:
            raise ValueError("mode 'key' needs at least one key")
        if self.mode == "latest" and not self.latest:
            raise ValueError("mode 'latest' needs a count")
        return self


class SinkOptions(BaseModel):
    """Options shared by the sinks that use them (Mezmo today)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    app: str = "logferry"
    hostname: str | None = None
    tags: str | None = None
    max_line_bytes: int = Field(default=32 * 1024, ge=256)
    verify_tls: bool = True


def build(model: type[BaseModel], **values: object) -> BaseModel:
    """Validate ``values`` into ``model``, turning pydantic errors into one-line ConfigErrors."""
    try:
        return model(**values)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "options"
        raise ConfigError(f"invalid {where}: {first.get('msg', 'invalid value')}") from None
