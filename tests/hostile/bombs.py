"""Hostile objects made at test time, streamed into a directory (never committed)."""

from __future__ import annotations

import zlib
from pathlib import Path

import zstandard

MiB = 1 << 20
_BLOCK = 4 * MiB


def _gzip_repeated(
    path: Path, block: bytes, count: int, tail: bytes = b"", head: bytes = b""
) -> Path:
    """gzip of ``head`` + ``block`` * ``count`` + ``tail``, written as it is compressed."""
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    with path.open("wb") as out:
        out.write(comp.compress(head))
        for _ in range(count):
            out.write(comp.compress(block))
        out.write(comp.compress(tail))
        out.write(comp.flush())
    return path


def gzip_zeros_line(directory: Path, size: int = 1024 * MiB) -> Path:
    """One line of ``size`` zero bytes, no newline, gzip (1 GB: about 1 MB)."""
    return _gzip_repeated(directory / "zeros.gz", b"0" * _BLOCK, size // _BLOCK)


def zstd_long_line(directory: Path, size: int = 300 * MiB) -> Path:
    """One ``size``-byte line of "a" then a newline, zstd (300 MB: about 10 KB)."""
    path = directory / "line.zst"
    with path.open("wb") as out, zstandard.ZstdCompressor(level=3).stream_writer(out) as w:
        block = b"a" * _BLOCK
        for _ in range(size // _BLOCK):
            w.write(block)
        w.write(b"\nlast line\n")
    return path


def csv_long_line(directory: Path, size: int = 300 * MiB) -> Path:
    """A CSV object: a header, one row, then a ``size``-byte line with no newline, gzip."""
    head = b"time,msg\n2024-01-02T03:04:05Z,ok\n2024-01-02T03:04:06Z,"
    return _gzip_repeated(directory / "long.csv.gz", b"x" * _BLOCK, size // _BLOCK, head=head)


def empty_lines(directory: Path, count: int = 64 * MiB) -> Path:
    """``count`` newlines and nothing else, gzip."""
    return _gzip_repeated(directory / "empty.gz", b"\n" * _BLOCK, count // _BLOCK)


def json_array(directory: Path, size: int = 128 * MiB) -> Path:
    """A JSON array of small objects, ``size`` bytes, gzip (2 M records; about 1 MB)."""
    item = b'{"a":1,"b":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"},'
    block = item * (_BLOCK // len(item))
    path = directory / "array.json.gz"
    comp = zlib.compressobj(1, zlib.DEFLATED, 31)
    with path.open("wb") as out:
        out.write(comp.compress(b"["))
        for _ in range(size // len(block)):
            out.write(comp.compress(block))
        out.write(comp.compress(b'{"a":1}]'))
        out.write(comp.flush())
    return path


def deep_json(directory: Path, depth: int = 100_000) -> Path:
    """``[[[[...]]]]`` nested ``depth`` deep, plain."""
    path = directory / "deep.json"
    path.write_bytes(b"[" * depth + b"]" * depth)
    return path


def cloudtrail(directory: Path, size: int = 50 * MiB) -> Path:
    """A CloudTrail-like file of about ``size`` bytes, plain."""
    event = (
        b'{"eventVersion":"1.08","userIdentity":{"type":"AssumedRole","principalId":"AROA:s",'
        b'"arn":"arn:aws:sts::123456789012:assumed-role/r/s","accountId":"123456789012"},'
        b'"eventTime":"2024-01-02T03:04:05Z","eventSource":"s3.amazonaws.com",'
        b'"eventName":"GetObject","awsRegion":"us-east-1","sourceIPAddress":"10.0.0.1",'
        b'"userAgent":"aws-sdk-java","requestParameters":{"bucketName":"b","key":"k/1"},'
        b'"responseElements":null,"additionalEventData":{"bytesTransferredOut":1234.5},'
        b'"requestID":"R1","eventID":"e-1","readOnly":true,"resources":[{"type":'
        b'"AWS::S3::Object","ARN":"arn:aws:s3:::b/k/1"}],"eventType":"AwsApiCall",'
        b'"managementEvent":false,"recipientAccountId":"123456789012"}'
    )
    count = size // (len(event) + 1)
    path = directory / "trail.json"
    with path.open("wb") as out:
        out.write(b'{"Records":[')
        batch = b",".join([event] * 1000)
        for i in range(count // 1000):
            out.write(batch if i == 0 else b"," + batch)
        out.write(b"]}")
    return path
