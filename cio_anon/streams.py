"""Writing to a file or a pipe, whole.

A write to a pipe that a signal interrupts (the process stopped and continued, as
Ctrl-Z and `fg` do; a profiler looking in) takes only part of what it is given, and
says how much; a write to a file may too. Python's buffered writers write the rest, but
a bare file does not, nor does a text stream over one (`PYTHONUNBUFFERED`). And a
buffered writer holds its lock while a full pipe blocks it, so that any other use of
the stream, the interpreter's flush at exit among them, waits as long. `write_all`
writes straight to the descriptor until everything is written, holding no lock.
"""

from __future__ import annotations

import os


def write_all(fd: int, data: bytes) -> None:
    """Write `data` to the descriptor `fd`, all of it (raises OSError when it cannot)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
