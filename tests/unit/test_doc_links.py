"""Every relative link in the project's Markdown leads to a file or folder that exists: a moved role
or module otherwise leaves its READMEs pointing at nothing."""
from __future__ import annotations

import re
import subprocess

from tests.conftest import ROOT

# [text](target) and [text](target "title"); what a browser would fetch is left alone
LINK = re.compile(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
EXTERNAL = re.compile(r"^(?:[a-z][a-z0-9+.-]*:|#)", re.I)


def markdown_files() -> list[str]:
    listed = subprocess.run(["git", "ls-files", "-z", "--", "*.md"], cwd=ROOT, check=True, capture_output=True,
                            text=True).stdout.split("\0")
    return sorted(name for name in listed if name)


def broken_links(text: str, folder) -> list[str]:
    targets = (m.group(1) for m in LINK.finditer(text))
    return [t for t in targets if not EXTERNAL.match(t) and not (folder / t.split("#", 1)[0]).exists()]


def test_the_check_finds_a_broken_link_and_passes_a_good_one(tmp_path):
    (tmp_path / "here.md").write_text("")
    text = "[a](here.md) [b](missing/README.md#part) [c](https://example.org/x) [d](#anchor) [e](here.md#x)"
    assert broken_links(text, tmp_path) == ["missing/README.md#part"]


def test_every_relative_link_in_the_projects_markdown_resolves():
    files = markdown_files()
    assert "README.md" in files
    broken = {name: found for name in files
              if (found := broken_links((ROOT / name).read_text(), (ROOT / name).parent))}
    assert broken == {}
