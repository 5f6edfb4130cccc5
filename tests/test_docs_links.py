"""README and docs/ hold together: every relative link points at a file that exists, every #anchor at a heading of
its page (as GitHub spells heading anchors), every [text][label] at a definition; README stays a short page."""
from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_LINES = 160  # the "~150": details go to docs/, README is what a user reads in two minutes

FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.S | re.M)
CODE_SPAN = re.compile(r"(`+)(?!`).*?(?<!`)\1(?!`)", re.S)
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
DEFINITION = re.compile(r"^ {0,3}\[([^\]]+)\]:\s*<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$", re.M)
REFERENCE = re.compile(r"\]\[([^\]]+)\]")
HEADING = re.compile(r"^ {0,3}#{1,6}[ \t]+(.+?)[ \t#]*$", re.M)
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.I)  # https:, mailto:, file: ...


def without_code(text: str) -> str:
    """The page as GitHub reads it for links and headings: fenced blocks and code spans blanked out."""
    text = FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)
    return CODE_SPAN.sub("code", text)


def github_slug(heading: str) -> str:
    """A heading's anchor as GitHub makes it (github-slugger): the rendered text lower-cased, every character
    that is not a letter, mark, digit, space, '-' or '_' dropped, spaces turned into '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading renders as its text
    text = re.sub(r"<[^>]+>", "", text).replace("`", "").replace("*", "")
    kept = [c for c in text.strip().lower()
            if c in "-_ " or unicodedata.category(c)[0] in "LM" or unicodedata.category(c) == "Nd"]
    return "".join(kept).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every heading's anchor on the page; a repeated slug gets -1, -2, ... as on GitHub."""
    seen: dict[str, int] = {}
    found = set()
    for heading in HEADING.findall(without_code(page.read_text(encoding="utf-8"))):
        slug = github_slug(heading)
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def link_targets(page: Path) -> list[str]:
    text = without_code(page.read_text(encoding="utf-8"))
    return INLINE_LINK.findall(text) + [target for _, target in DEFINITION.findall(text)]


def broken_links(page: Path) -> list[str]:
    """Each relative link of the page that does not resolve, with the reason."""
    problems = []
    for target in link_targets(page):
        if not target or EXTERNAL.match(target):
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            problems.append(f"{target}: no such file or folder")
        elif anchor and file.suffix != ".md":
            problems.append(f"{target}: an anchor into a file that is not a Markdown page")
        elif anchor and anchor not in anchors(file):
            problems.append(f"{target}: {file.name} has no heading with the anchor #{anchor}")
    return problems


def undefined_labels(page: Path) -> list[str]:
    """[text][label] references with no `[label]: target` line on the page (GitHub would print them as typed)."""
    text = without_code(page.read_text(encoding="utf-8"))
    defined = {label.lower() for label, _ in DEFINITION.findall(text)}
    return sorted({label for label in REFERENCE.findall(text) if label.lower() not in defined})


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.relative_to(ROOT).as_posix())
def test_every_relative_link_and_anchor_resolves(page):
    assert broken_links(page) == []


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.relative_to(ROOT).as_posix())
def test_every_reference_link_has_a_definition(page):
    assert undefined_labels(page) == []


def test_readme_stays_a_short_page():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README has {len(lines)} lines; move details into docs/"


def test_readme_links_every_page_of_docs_it_moved_details_to():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for page in ("docs/compatibility.md", "docs/speed.md", "docs/live.md", "docs/usage.md", "docs/weights.md"):
        assert f"]({page}" in readme or f"]: {page}" in readme, page


@pytest.mark.parametrize("heading, slug", [
    ("What differs per version, and what the extension does", "what-differs-per-version-and-what-the-extension-does"),
    ("Compatibility: AUTOMATIC1111 1.6.0 → 1.10.1, Forge", "compatibility-automatic1111-160--1101-forge"),
    ("Xet, `huggingface_hub` versions, resuming", "xet-huggingface_hub-versions-resuming"),
    ("On the Forges: AnimateDiff's Forge branch", "on-the-forges-animatediffs-forge-branch"),
    ("Live (2026-12-02)", "live-2026-12-02"),
    ("Note 1: see [Forge](#forge) ¹", "note-1-see-forge-"),
])
def test_anchors_are_spelled_as_github_spells_them(heading, slug):
    assert github_slug(heading) == slug


def test_a_broken_file_a_broken_anchor_and_a_missing_label_are_found(tmp_path):
    (tmp_path / "other.md").write_text("# Other page\n\n## Its part\n", encoding="utf-8")
    page = tmp_path / "page.md"
    page.write_text(
        "# Page\n\n## Part\n\n## Part\n\n```bash\n# not a heading\n[x](missing-in-code.md)\n```\n\n"
        "[ok](other.md#its-part) [ok](#part-1) [ok](https://example.com/x#y) `[code](nowhere.md)`\n"
        "[bad file](nowhere.md) [bad anchor](other.md#no-such-part) [bad here](#not-a-heading)\n"
        "[ok][defined] [bad][undefined] ![img](missing.png)\n\n[defined]: other.md#other-page\n",
        encoding="utf-8",
    )
    assert anchors(page) == {"page", "part", "part-1"}
    assert [problem.split(":")[0] for problem in broken_links(page)] == [
        "nowhere.md", "other.md#no-such-part", "#not-a-heading", "missing.png"]
    assert undefined_labels(page) == ["undefined"]
