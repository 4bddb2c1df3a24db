"""The README's generated parts (walk-through output, command reference) are current."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_readme_is_generated_from_the_code() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "cogapp", "--check", "README.md"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, (
        "README.md is stale: run `cog -r README.md`\n" + done.stdout + done.stderr
    )
