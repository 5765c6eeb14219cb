"""The documentation holds together: README.md stays a short entry page that keeps CI's test command, every relative
link in README.md and docs/ reaches a file (and a heading, when it names one), and no Python or shell file cites a
Markdown file, or a protocol section, that the repository lacks (issue #21, item 7)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.helpers.paths import REPO

README = REPO / "README.md"
DOCS = REPO / "docs"
PROTOCOL = REPO / "docs/protocol.md"
README_LIMIT = 10_000  # bytes: "at most 10 KB", read strictly
SKIP_DIRS = {".git", ".venv", "venv", "__pycache__", "data", "logs", "run", "node_modules"}

LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)
INLINE_CODE = re.compile(r"`[^`\n]*`")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$", re.M)
# A path ending in .md, as code comments cite documents (README.md, docs/games/voting.md, ...).
MD_CITATION = re.compile(r"(?<![\w./-])((?:[\w.-]+/)*[\w-]+\.md)\b")
PROTOCOL_SECTIONS = re.compile(r"docs/protocol\.md,? sections? (\d+(?:(?:, | and |-)\d+)*)")


def markdown_files() -> list[Path]:
    return [README, *sorted(DOCS.rglob("*.md"))]


def source_files() -> list[Path]:
    files = []
    for path in sorted(REPO.rglob("*")):
        if SKIP_DIRS & set(path.relative_to(REPO).parts):
            continue
        if path.is_file() and (path.suffix in (".py", ".sh") or path.relative_to(REPO).as_posix() == ".ci/run"):
            files.append(path)
    return files


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = heading.replace("`", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = FENCE.sub("", path.read_text(encoding="utf-8"))
    seen: dict[str, int] = {}
    result = set()
    for match in HEADING.finditer(text):
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        result.add(base if count == 0 else f"{base}-{count}")
    return result


def links(path: Path) -> list[str]:
    text = INLINE_CODE.sub("", FENCE.sub("", path.read_text(encoding="utf-8")))
    return LINK.findall(text)


def test_the_readme_is_at_most_10_kb() -> None:
    size = len(README.read_bytes())
    assert size <= README_LIMIT, f"README.md is {size} bytes; move details to docs/ (limit {README_LIMIT})"


def test_the_readme_keeps_the_test_command_ci_runs() -> None:
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    command = next(line for line in ci if "-m pytest" in line)
    assert command in README.read_text(encoding="utf-8").splitlines()


def test_every_docs_page_says_what_it_is_for() -> None:
    for page in sorted(DOCS.rglob("*.md")):
        head = page.read_text(encoding="utf-8")[:1200]
        assert "What this page is for" in head or "what this page is for" in head, page.relative_to(REPO)


@pytest.mark.parametrize("page", markdown_files(), ids=lambda p: p.relative_to(REPO).as_posix())
def test_every_relative_link_resolves(page: Path) -> None:
    broken = []
    for target in links(page):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:: not ours to check offline
            continue
        file_part, _, anchor = target.partition("#")
        destination = (page.parent / file_part).resolve() if file_part else page
        if not destination.exists():
            broken.append(f"{target}: no such file")
        elif anchor and destination.suffix == ".md" and anchor not in anchors(destination):
            broken.append(f"{target}: no heading with that anchor")
    assert not broken, f"{page.relative_to(REPO)}: " + "; ".join(broken)


def test_no_source_file_cites_a_missing_markdown_file() -> None:
    missing = []
    for path in source_files():
        for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            for cited in MD_CITATION.findall(line):
                # A bare file name as a string literal is a name the code writes (a study's "report.md"), not a
                # document it cites; a cited document names its folder (docs/...) or stands in prose.
                if "/" not in cited and (f'"{cited}"' in line or f"'{cited}'" in line):
                    continue
                if not (REPO / cited).exists():
                    missing.append(f"{path.relative_to(REPO)}:{number}: {cited}")
    assert not missing, "cited but not in the repository:\n" + "\n".join(missing)


def test_protocol_sections_cited_in_the_code_exist() -> None:
    sections = {int(m) for m in re.findall(r"^## (\d+)\. ", PROTOCOL.read_text(encoding="utf-8"), re.M)}
    missing = []
    for path in source_files():
        for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            for cited in PROTOCOL_SECTIONS.findall(line):
                for section in map(int, re.findall(r"\d+", cited)):
                    if section not in sections:
                        missing.append(f"{path.relative_to(REPO)}:{number}: section {section}")
    assert not missing, "docs/protocol.md has no such section:\n" + "\n".join(missing)
