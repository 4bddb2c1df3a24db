"""The generated parts of the README and the guides in docs/ (walk-through output, the
command reference) are current."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


DOCUMENTS = ["README.md", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))]


def test_the_guides_are_linked_from_the_readme() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert [d for d in DOCUMENTS[1:] if f"]({d})" not in readme] == []


def test_readme_is_generated_from_the_code() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "cogapp", "--check", *DOCUMENTS],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, (
        "a document is stale: run `cog -r README.md docs/*.md`\n" + done.stdout + done.stderr
    )
