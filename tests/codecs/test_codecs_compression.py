"""Compression detection and streaming decompression."""

from __future__ import annotations

import bz2
import gzip
import os
import zlib
from collections.abc import Callable

import pytest
import zstandard

from logferry.codecs import compression
from logferry.codecs.compression import PIECE_SIZE, decompress, detect
from logferry.errors import DecodeError

Chunker = Callable[[bytes, int], list[bytes]]


@pytest.fixture(autouse=True, params=["isal", "zlib"])
def inflater(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test runs with ISA-L inflating gzip (the fast extra) and with zlib alone."""
    if request.param == "isal" and compression._isal_zlib is None:
        # tests/sinks/test_mezmo_payload.py fails the suite when dev lacks ISA-L.
        pytest.skip("ISA-L (isal) not installed")
    if request.param == "zlib":
        monkeypatch.setattr(compression, "_isal_zlib", None)
    return str(request.param)


def test_isal_inflates_when_installed(inflater: str) -> None:
    dec, _ = compression._new_decompressor("gzip")
    assert type(dec).__module__.startswith("isal" if inflater == "isal" else "zlib")


TEXT = b"".join(b"line %d with some text\n" % i for i in range(50_000))


def _zstd(data: bytes, **kwargs: object) -> bytes:
    return zstandard.ZstdCompressor(**kwargs).compress(data)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("head", "kind"),
    [
        (b"\x1f\x8b\x08\x00", "gzip"),
        (b"\x28\xb5\x2f\xfd\x00", "zstd"),
        (b"BZh91AY", "bz2"),
        (b"BZh", "bz2"),
        (b"BZhello world", "none"),
        (b'{"a": 1}', "none"),
        (b"", "none"),
        (b"\x1f", "none"),
    ],
)
def test_detect(head: bytes, kind: str) -> None:
    assert detect(head) == kind


@pytest.mark.parametrize(
    "compress",
    [gzip.compress, bz2.compress, _zstd, lambda d: d],
    ids=["gzip", "bz2", "zstd", "none"],
)
@pytest.mark.parametrize("size", [1, 3, 7, 4096, 10**9])
def test_roundtrip_any_chunking(
    compress: Callable[[bytes], bytes], size: int, chunked: Chunker
) -> None:
    data = TEXT if size > 3 else TEXT[:20_000]  # 1-byte chunks of 1 MB would be slow
    out = list(decompress(chunked(compress(data), size)))
    assert b"".join(out) == data
    assert all(out)


def test_multi_member_gzip(chunked: Chunker) -> None:
    blob = gzip.compress(b"first\n") + gzip.compress(b"second\n") + gzip.compress(b"third\n")
    for size in (5, 7, len(blob)):
        assert b"".join(decompress(chunked(blob, size))) == b"first\nsecond\nthird\n"


def test_gzip_member_ending_exactly_at_chunk_boundary() -> None:
    one, two = gzip.compress(b"a" * 100), gzip.compress(b"b" * 100)
    assert b"".join(decompress([one, two])) == b"a" * 100 + b"b" * 100


def test_gzip_trailing_nul_padding_is_ignored() -> None:
    assert b"".join(decompress([gzip.compress(b"x\n") + b"\0" * 512])) == b"x\n"


def test_multi_stream_bz2(chunked: Chunker) -> None:
    blob = bz2.compress(b"one\n") + bz2.compress(b"two\n")
    assert b"".join(decompress(chunked(blob, 7))) == b"one\ntwo\n"


def test_multi_frame_zstd_with_checksum(chunked: Chunker) -> None:
    blob = _zstd(b"one\n", write_checksum=True) + _zstd(b"two\n" * 1000, write_content_size=False)
    assert b"".join(decompress(chunked(blob, 7))) == b"one\n" + b"two\n" * 1000


def test_first_chunk_shorter_than_magic() -> None:
    blob = gzip.compress(b"hello\n")
    assert b"".join(decompress([blob[:1], b"", blob[1:2], blob[2:]])) == b"hello\n"
    assert b"".join(decompress([b"ab"])) == b"ab"
    assert list(decompress([])) == []


@pytest.mark.parametrize(
    "compress",
    [gzip.compress, bz2.compress, _zstd],
    ids=["gzip", "bz2", "zstd"],
)
def test_output_pieces_are_bounded(compress: Callable[[bytes], bytes]) -> None:
    # 24 MiB of zeros compresses to a few KB: one input chunk must not become one piece.
    bomb = compress(b"\0" * (24 * PIECE_SIZE))
    assert len(bomb) < 100_000
    sizes = [len(piece) for piece in decompress([bomb])]
    assert sum(sizes) == 24 * PIECE_SIZE
    assert max(sizes) <= PIECE_SIZE
    assert len(sizes) >= 24


@pytest.mark.parametrize(
    ("compress", "kind"),
    [(gzip.compress, "gzip"), (bz2.compress, "bz2"), (_zstd, "zstd")],
)
@pytest.mark.parametrize("cut", [1, 4, 50, 0.5])
def test_truncated_stream_raises(
    compress: Callable[[bytes], bytes], kind: str, cut: float, chunked: Chunker
) -> None:
    blob = compress(os.urandom(3000) + TEXT[:50_000])
    keep = int(len(blob) * cut) if isinstance(cut, float) else len(blob) - cut
    with pytest.raises(DecodeError, match=rf"^truncated {kind} stream: .*fetch it again$"):
        list(decompress(chunked(blob[:keep], 1000)))


def test_truncated_second_gzip_member_raises() -> None:
    blob = gzip.compress(b"whole\n") + gzip.compress(b"cut off\n")[:-3]
    with pytest.raises(DecodeError, match="truncated gzip stream"):
        list(decompress([blob]))


def test_corrupt_gzip_names_reason_and_position(inflater: str) -> None:
    # A deflate block header with type 3 (reserved): each library names it its own way.
    blob = bytearray(gzip.compress(TEXT[:1000]))
    blob[10] = 0xFF
    with pytest.raises(DecodeError) as info:
        list(decompress([bytes(blob)]))
    message = str(info.value)
    reason = "invalid deflate block found" if inflater == "isal" else "invalid block type"
    assert message.startswith(f"corrupt gzip stream: {reason} at byte ~")
    assert "\n" not in message


def test_corrupt_gzip_checksum(inflater: str) -> None:
    blob = bytearray(gzip.compress(TEXT[:1000]))
    blob[-8] ^= 0xFF  # CRC-32 of the member
    reason = "incorrect checksum found" if inflater == "isal" else "incorrect data check"
    with pytest.raises(DecodeError, match=rf"^corrupt gzip stream: {reason} at byte ~\d+$"):
        list(decompress([bytes(blob)]))


@pytest.mark.parametrize(
    ("second", "reason"),
    [
        (b"\x1f\x8c\x08\x00" + bytes(20), "incorrect header check"),
        (b"\x1f\x8b\x07\x00" + bytes(20), "unknown compression method"),
        (b"\x1f\x8b\x08\xe0" + bytes(20), "unknown header flags set"),
        (b"\x1f\x8b\x08\x00garbage, not deflate" * 4, None),
    ],
)
@pytest.mark.parametrize("size", [1, 3, 1000])
def test_bad_second_member_header_is_corrupt_in_zlibs_words(
    second: bytes, reason: str | None, size: int, chunked: Chunker
) -> None:
    # The member header is checked before either library sees it, even one byte at a time.
    blob = gzip.compress(b"ok\n") + second
    with pytest.raises(DecodeError, match=rf"^corrupt gzip stream: {reason or '.+'} at byte ~"):
        list(decompress(chunked(blob, size)))


def test_garbage_after_gzip_member_is_corrupt() -> None:
    with pytest.raises(DecodeError, match="corrupt gzip stream: incorrect header check"):
        list(decompress([gzip.compress(b"ok\n") + b"garbage!"]))


def test_corrupt_bz2_and_zstd() -> None:
    bad_bz2 = bytearray(bz2.compress(TEXT[:5000]))
    bad_bz2[20:30] = b"\0" * 10
    with pytest.raises(DecodeError, match=r"^corrupt bz2 stream: "):
        list(decompress([bytes(bad_bz2)]))
    with pytest.raises(DecodeError, match=r"^corrupt zstd stream: "):
        list(decompress([_zstd(b"ok\n") + b"garbage!"]))


def test_raw_deflate_zlib_stream_is_passed_through() -> None:
    # zlib-wrapped data has no gzip magic: not ours to guess, it passes through as bytes.
    blob = zlib.compress(b"abc")
    assert b"".join(decompress([blob])) == blob
