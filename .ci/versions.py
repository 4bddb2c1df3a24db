"""Print the versions installed in this environment beside those of the lock, and name
the packages that differ (so a break from a new release says which release it was).

usage: python .ci/versions.py LABEL requirements/test.lock
"""

from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path


def normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked(path: Path) -> dict[str, str]:
    pins = re.findall(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", path.read_text(), re.M)
    return {normal(name): version for name, version in pins}


def main() -> None:
    label, lock = sys.argv[1], locked(Path(sys.argv[2]))
    installed = {
        normal(dist.metadata["Name"]): dist.version
        for dist in metadata.distributions()
        if dist.metadata["Name"]
    }
    differ = [
        f"{name} {version} (lock {lock[name]})"
        for name, version in sorted(installed.items())
        if name in lock and lock[name] != version
    ]
    direct = ("duckdb", "rich", "sqlite-utils", "starlette", "uvicorn", "typer", "pendulum")
    shown = ", ".join(f"{name} {installed[name]}" for name in direct if name in installed)
    print(f"{label}: {shown}")
    print(f"{label}: differs from the lock: {', '.join(differ) or 'nothing'}")
    Path(sys.argv[3] if len(sys.argv) > 3 else "/dev/null").write_text("\n".join(differ))


if __name__ == "__main__":
    main()
