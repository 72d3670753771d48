"""A local directory used as a bucket: keys are '/'-separated paths relative to it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO
from urllib.parse import unquote, urlsplit

from logferry.errors import ConfigError, SourceError
from logferry.records import ObjectInfo
from logferry.redact import redact_url
from logferry.registry import Component, NoOptions
from logferry.sources.base import READ_CHUNK, BucketSource

PAGE = 1000


class LocalDirSource(BucketSource):
    """Objects are the regular files under ``root`` (recursively), optionally under a prefix."""

    def __init__(self, root: str | Path, prefix: str = "") -> None:
        self.root = Path(root).expanduser().resolve()
        if not self.root.is_dir():
            raise ConfigError(f"source directory {self.root} does not exist or is not a directory")
        self.prefix = prefix
        self.id = self.root.as_uri()
        self.display = self.id + (f"?prefix={prefix}" if prefix else "")

    def _info(self, path: Path, key: str) -> ObjectInfo:
        st = path.stat()
        # size + mtime stand in for an ETag: a rewritten file is a new version.
        return ObjectInfo(
            key, st.st_size, f"{st.st_size:x}-{st.st_mtime_ns:x}", st.st_mtime_ns // 1_000_000
        )

    def list_pages(self) -> Iterator[list[ObjectInfo]]:
        """Walk the tree in sorted order, yielding pages of files."""
        page: list[ObjectInfo] = []
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames.sort()
            rel_dir = os.path.relpath(dirpath, self.root)
            for name in sorted(filenames):
                key = name if rel_dir == "." else f"{rel_dir.replace(os.sep, '/')}/{name}"
                if not key.startswith(self.prefix):
                    continue
                path = Path(dirpath, name)
                try:
                    if not path.is_file():
                        continue
                    page.append(self._info(path, key))
                except FileNotFoundError:
                    continue  # vanished while listing
                if len(page) >= PAGE:
                    yield page
                    page = []
        if page:
            yield page

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root):
            raise SourceError(f"key {key!r} points outside {self.root}")
        return path

    def head(self, key: str) -> ObjectInfo:
        """Describe one file."""
        path = self._path(key)
        try:
            if not path.is_file():
                raise SourceError(f"no such object: {key} (not a file under {self.root})")
            return self._info(path, key)
        except FileNotFoundError:
            raise SourceError(f"no such object: {key} (not a file under {self.root})") from None

    def open(self, obj: ObjectInfo, chunk_size: int = READ_CHUNK) -> Iterator[bytes]:
        """Stream the file in chunks."""
        try:
            f = self._path(obj.key).open("rb")
        except FileNotFoundError:
            raise SourceError(
                f"object {obj.key} no longer exists (deleted after listing)"
            ) from None
        except OSError as exc:
            raise SourceError(f"cannot read {obj.key}: {exc.strerror}") from None
        return self._stream(f, chunk_size)

    @staticmethod
    def _stream(f: IO[bytes], chunk_size: int) -> Iterator[bytes]:
        with f:
            while chunk := f.read(chunk_size):
                yield chunk

    def delete(self, keys: list[str]) -> int:
        """Unlink files; missing ones are not counted."""
        n = 0
        for key in keys:
            try:
                self._path(key).unlink()
                n += 1
            except FileNotFoundError:
                pass
        return n


def directory_of(url: str) -> str:
    """The directory of ``file:///DIR`` or of a plain path."""
    if "://" not in url:
        return url
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise ConfigError(f"bad file URL {redact_url(url)!r}: use file:///ABSOLUTE/DIR")
    return unquote(parts.path)


def _check(url: str, options: NoOptions) -> None:
    directory = directory_of(url)
    if not Path(directory).expanduser().is_dir():
        raise ConfigError(f"{directory} is not a directory")


def _open(url: str, options: NoOptions) -> LocalDirSource:
    return LocalDirSource(directory_of(url))


COMPONENT = Component(
    name="file",
    kind="bucket",
    schemes=("file", ""),
    options=NoOptions,
    check=_check,
    open=_open,
    usage="file:///DIR, a directory path",
    summary="the files under a local directory, as objects",
)
