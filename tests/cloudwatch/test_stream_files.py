"""StreamFileSink: one line per record, cut back to the acknowledged records on reopen."""

from __future__ import annotations

from pathlib import Path

from logferry.cloudwatch.layout import encode_lines, key_relpath
from logferry.records import Batch, ObjectInfo
from logferry.sinks.stream_files import StreamFileSink


def batch(start: int, lines: list[str]) -> Batch:
    return Batch("cw", "g:s", start, start + len(lines), lines, [0] * len(lines))


def sink(root: Path) -> StreamFileSink:
    return StreamFileSink(
        root, layout=lambda key: key_relpath(key, as_json=False), encode=encode_lines
    )


OBJ = ObjectInfo("g:s", 0, "1", 0)


def test_reopen_cuts_back_to_the_acknowledged_lines(tmp_path: Path) -> None:
    s = sink(tmp_path)
    s.open("cw", OBJ, 0, stream=True)
    s.write(batch(0, ["a", "b\nc"]))
    s.write(batch(2, ["d"]))
    s.close()
    path = tmp_path / key_relpath("g:s", as_json=False)
    assert path.read_text() == "a\nb\\nc\nd\n"
    with open(path, "ab") as f:
        f.write(b"torn")
    s = sink(tmp_path)
    s.open("cw", OBJ, 2, stream=True)  # only two records were acknowledged
    s.write(batch(2, ["d2"]))
    s.write(batch(2, ["d3"]))  # the same records again (a retry): replaced, not repeated
    s.close()
    assert path.read_text() == "a\nb\\nc\nd3\n"


def test_a_file_shorter_than_acknowledged_goes_on_from_its_last_whole_line(
    tmp_path: Path,
) -> None:
    path = tmp_path / key_relpath("g:s", as_json=False)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"a\nb\ntor")
    s = sink(tmp_path)
    s.open("cw", OBJ, 5, stream=True)
    s.write(batch(5, ["f"]))
    s.close()
    assert path.read_text() == "a\nb\nf\n"
