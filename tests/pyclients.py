"""The Python client libraries teams use (customerio-cdp-analytics,
segment-analytics-python, rudder-sdk-python), run in a virtual environment of their own.

They require python-dateutil<3; installed beside cio-anon they would take the suite's
python-dateutil below the one users get, so they live apart and run as a child process:
the calls a test makes are a script, run by that environment's Python against a real
`cio-anon serve`. The environment is built once from `requirements/clients.lock`
(hash-checked) and kept in pytest's cache, keyed by the lock's digest."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
import venv
from dataclasses import dataclass
from pathlib import Path

import pytest

LOCK = Path(__file__).resolve().parent.parent / "requirements" / "clients.lock"

# What every script starts with: the server's URL and write key, as the test gave them.
PRELUDE = "import sys\nURL, WRITE = sys.argv[1], sys.argv[2]\n"


@dataclass(frozen=True)
class PythonClients:
    python: Path

    def run(self, script: str, url: str, write_key: str) -> None:
        """Run `script` (client calls; `URL` and `WRITE` are defined); a script that
        fails fails the test with its stderr."""
        done = subprocess.run(
            [str(self.python), "-c", PRELUDE + textwrap.dedent(script), url, write_key],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            env={key: value for key, value in os.environ.items() if key != "PYTHONPATH"},
        )
        assert done.returncode == 0, done.stderr


def _build(folder: Path) -> str | None:
    """Build the environment in `folder`; None when it is ready, else why it is not."""
    venv.EnvBuilder(with_pip=True, clear=True).create(folder)
    done = subprocess.run(
        [str(folder / "bin" / "python"), "-m", "pip", "install", "-q"]
        + ["--disable-pip-version-check", "--require-hashes", "-r", str(LOCK)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    return None if done.returncode == 0 else done.stderr.strip()[-500:]


@pytest.fixture(scope="session")
def python_clients(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> PythonClients:
    if sys.platform == "win32":
        pytest.skip("the clients' environment is built for POSIX layouts")
    digest = hashlib.sha256(LOCK.read_bytes()).hexdigest()[:16]
    cache = request.config.cache
    if cache is not None:
        base = cache.mkdir("python-clients")
    else:  # the cache plugin is off: build it for this run only
        base = tmp_path_factory.mktemp("python-clients")
    folder = base / digest
    ready = folder / "ready"
    # the suite's processes (pytest-xdist's workers) build it once: the others wait
    import fcntl

    with (base / f"{digest}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not ready.exists():
            why = _build(folder)
            if why is not None:
                if os.environ.get("CI"):
                    pytest.fail(f"the Python clients could not be installed: {why}")
                pytest.skip(f"the Python clients could not be installed: {why}")
            ready.write_text(digest)
    return PythonClients(folder / "bin" / "python")
