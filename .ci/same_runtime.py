"""Fail when the test environment runs other releases of cio-anon's runtime dependencies
than a plain `pip install .` gets (a test extra capping one would hold it back, and the
suite would not run what users run).

usage: python .ci/same_runtime.py PLAIN_PYTHON   (run with the test environment's Python)
"""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import metadata

LIST = (
    "import json, importlib.metadata as m; "
    "print(json.dumps({d.metadata['Name'].lower(): d.version for d in m.distributions()}))"
)


def main() -> None:
    plain: dict[str, str] = json.loads(
        subprocess.run([sys.argv[1], "-c", LIST], capture_output=True, text=True, check=True).stdout
    )
    here = {dist.metadata["Name"].lower(): dist.version for dist in metadata.distributions()}
    held = [
        f"{name} {here[name]} (a plain install gets {version})"
        for name, version in sorted(plain.items())
        if name not in ("pip", "setuptools", "cio-anon") and name in here and here[name] != version
    ]
    if held:
        sys.exit("the test environment runs other releases than users get: " + ", ".join(held))
    print(f"the test environment runs the releases a plain install gets ({len(plain)} packages)")


if __name__ == "__main__":
    main()
