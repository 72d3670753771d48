"""Format registry: a name for every format, and ``auto`` which picks one per object."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from logferry.codecs.formats.api_request import ApiRequestFormat
from logferry.codecs.formats.auto import HEAD_SIZE, detect_format
from logferry.codecs.formats.aws_alb import AwsAlbFormat
from logferry.codecs.formats.aws_vpc_flow import AwsVpcFlowFormat
from logferry.codecs.formats.azure_ad import AzureAdFormat
from logferry.codecs.formats.base import DecodeContext, Format, FormatOptions
from logferry.codecs.formats.cloudtrail import CloudTrailFormat
from logferry.codecs.formats.cloudwatch_export import CloudWatchExportFormat
from logferry.codecs.formats.csv import CsvFormat
from logferry.codecs.formats.gsuite_login import GsuiteLoginFormat
from logferry.codecs.formats.ibm_vpc_flow import IbmVpcFlowFormat
from logferry.codecs.formats.json import JsonFormat
from logferry.codecs.formats.lines import LinesFormat
from logferry.codecs.formats.ndjson import NdjsonFormat
from logferry.codecs.formats.syslog import SyslogFormat
from logferry.codecs.framing import peek
from logferry.errors import ConfigError
from logferry.records import Chunk


class AutoFormat(Format):
    """Detects the format of each object (see :func:`detect_format`) and decodes with it."""

    name = "auto"

    def decode(self, chunks: Iterable[bytes], ctx: DecodeContext) -> Iterator[Chunk]:
        """Peek at the data, record the choice in ``ctx.format_name``, then decode."""
        name, data = resolve_format(chunks, ctx.key)
        ctx.format_name = name
        yield from get_format(name).decode(data, ctx)


FORMATS: dict[str, type[Format]] = {
    cls.name: cls
    for cls in (
        AutoFormat,
        LinesFormat,
        NdjsonFormat,
        JsonFormat,
        IbmVpcFlowFormat,
        AwsVpcFlowFormat,
        CloudTrailFormat,
        SyslogFormat,
        AwsAlbFormat,
        CloudWatchExportFormat,
        AzureAdFormat,
        GsuiteLoginFormat,
        CsvFormat,
        ApiRequestFormat,
    )
}


def get_format(name: str) -> Format:
    """Return the format called ``name`` ("auto" included); ConfigError for unknown names."""
    cls = FORMATS.get(name)
    if cls is None:
        raise ConfigError(f"unknown format {name!r}; choose one of: {', '.join(sorted(FORMATS))}")
    return cls()


def resolve_format(
    chunks: Iterable[bytes], key: str, name: str = "auto"
) -> tuple[str, Iterator[bytes]]:
    """Resolve ``name`` ("auto" peeks at decompressed ``chunks``) and return the data intact."""
    if name != "auto":
        get_format(name)  # validate
        return name, iter(chunks)
    head, data = peek(chunks, HEAD_SIZE)
    return detect_format(key, head), data


__all__ = [
    "FORMATS",
    "AutoFormat",
    "DecodeContext",
    "Format",
    "FormatOptions",
    "detect_format",
    "get_format",
    "resolve_format",
]
