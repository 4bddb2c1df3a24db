"""Helpers for the README: run real commands and paste their output (via cog).

`cog -r README.md docs/*.md` rewrites the generated parts; `cog --check` on them (run by the
test suite) fails when they are stale.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import typer
from rich.console import Console
from typer.testing import CliRunner

from cio_anon import cli
from cio_anon.cli import app


def _terminal(*, stderr: bool = False) -> Console:
    """Transcripts show what a terminal of WIDTH columns shows, without colour."""
    return Console(highlight=False, stderr=stderr, width=int(WIDTH), color_system=None)


cli.console = _terminal
# The README shows what a terminal shows: no plain-line shortcut for pipes.
cli._plain_lines = lambda renderables, stream: False  # type: ignore[attr-defined]

WIDTH = "100"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@contextmanager
def _environment(db: str) -> Iterator[None]:
    saved = dict(os.environ)
    os.environ.update({"COLUMNS": WIDTH, "CIO_ANON_DB": db, "NO_COLOR": "1", "TERM": "dumb"})
    os.environ.pop("CIO_ANON_NOW", None)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def session(*commands: str, folder: bool = False) -> str:
    """Run `cio-anon` command lines in one fresh workspace; a console transcript.

    With `folder`, they run in a fresh folder, where `python bench/...` lines run the
    repository's scripts."""
    lines: list[str] = []
    here = os.getcwd()
    with tempfile.TemporaryDirectory() as tmp, _environment(os.path.join(tmp, "cio_anon.db")):
        runner = CliRunner()
        if folder:
            os.chdir(tmp)
        try:
            for command in commands:
                args = shlex.split(command)
                lines.append(f"$ {command}")
                if args[0] == "python":
                    script = os.path.join(ROOT, args[1])
                    done = subprocess.run(
                        [sys.executable, script, *args[2:]], capture_output=True, text=True
                    )
                    lines.append((done.stdout + done.stderr).rstrip("\n"))
                    continue
                result = runner.invoke(app, args[1:], terminal_width=int(WIDTH))
                # the workspace as a reader's own would be named: ./cio_anon.db
                lines.append(result.output.replace(tmp + os.sep, "").rstrip("\n"))
        finally:
            os.chdir(here)
    return (
        "```console\n"
        + "\n".join(line.rstrip() for line in "\n".join(lines).splitlines())
        + "\n```"
    )


def reference() -> str:
    """The help of the command and of every subcommand."""
    runner = CliRunner()
    with tempfile.TemporaryDirectory() as tmp, _environment(os.path.join(tmp, "x.db")):
        blocks = [("cio-anon", runner.invoke(app, ["--help"]).output)]

        def walk(path: list[str], command: Any) -> None:
            for name, sub in getattr(command, "commands", {}).items():
                args = [*path, name]
                blocks.append(
                    ("cio-anon " + " ".join(args), runner.invoke(app, [*args, "--help"]).output)
                )
                walk(args, sub)

        walk([], typer.main.get_command(app))
    parts = []
    for title, text in blocks:
        body = "\n".join(line.rstrip() for line in text.strip("\n").splitlines())
        parts.append(f"## `{title}`\n\n```text\n{body}\n```")
    return "\n\n".join(parts)
