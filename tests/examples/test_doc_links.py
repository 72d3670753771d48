"""Relative links in README.md, docs/ and examples/README.md point at files and headings that
exist, and every `examples/…` path the docs name is a file."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCS = sorted([REPO / "README.md", REPO / "examples" / "README.md", *(REPO / "docs").glob("*.md")])
LINK = re.compile(r"(?<!!)\[(?:[^\]\[]|\[[^\]]*\])*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^\s*(```|~~~)")
#: Pages another change is writing; a link to one is accepted until the file exists, and checked
#: like any other from then on. Remove an entry once its page is merged.
PENDING: set[Path] = set()


def _prose(text: str) -> str:
    """The text outside fenced code blocks and inline code spans."""
    kept, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            kept.append(re.sub(r"`[^`]*`", "", line))
    return "\n".join(kept)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links keep their text
    text = text.replace("`", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading anchor of a markdown file, with GitHub's -1, -2 suffixes for repeats."""
    seen: dict[str, int] = {}
    found = set()
    fenced = False
    for line in path.read_text().splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        m = re.match(r"^(#{1,6})\s+(.*?)\s*#*\s*$", line)
        if fenced or not m:
            continue
        base = slug(m.group(2))
        n = seen.get(base, 0)
        seen[base] = n + 1
        found.add(base if n == 0 else f"{base}-{n}")
    return found


def test_slug_matches_github() -> None:
    assert slug("Serverless: AWS Lambda and IBM Code Engine") == (
        "serverless-aws-lambda-and-ibm-code-engine"
    )
    assert slug(
        "Following files and streams: `ship tail:///GLOB` and `ship cloudwatch://GROUP`"
    ) == ("following-files-and-streams-ship-tailglob-and-ship-cloudwatchgroup")
    assert (
        slug("`logferry cloudwatch …`: CloudWatch Logs") == "logferry-cloudwatch--cloudwatch-logs"
    )


def broken_links(doc: Path) -> list[str]:
    """The relative links of ``doc`` whose file or heading does not exist."""
    broken = []
    for target in LINK.findall(_prose(doc.read_text())):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        path_part, _, anchor = target.partition("#")
        dest = (doc.parent / path_part).resolve() if path_part else doc
        if not dest.exists() and dest in PENDING:
            continue
        if not dest.exists():
            broken.append(f"{target}: no file {dest}")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading #{anchor} in {dest.name}")
    return broken


def test_broken_links_are_found(tmp_path: Path) -> None:
    (tmp_path / "other.md").write_text("# Other page\n\n## A `code` heading: yes\n")
    doc = tmp_path / "doc.md"
    doc.write_text(
        "# Title\n\n[ok](other.md) [ok](other.md#a-code-heading-yes) [ok](#title)\n"
        "[bad](missing.md) [bad](other.md#nope) [bad](#nope) [web](https://example.com/x)\n"
        "```\n[in code](missing-too.md)\n```\n"
    )
    assert [b.split(":")[0] for b in broken_links(doc)] == [
        "missing.md",
        "other.md#nope",
        "#nope",
    ]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(doc: Path) -> None:
    broken = broken_links(doc)
    assert not broken, f"{doc.relative_to(REPO)}: " + "; ".join(broken)


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_named_example_files_exist(doc: Path) -> None:
    named = set(re.findall(r"(?<![\w/.])examples/[\w./-]*\w", doc.read_text()))
    missing = sorted(n for n in named if not (REPO / n).exists())
    assert not missing, f"{doc.relative_to(REPO)} names missing files: {missing}"
