"""Check a built wheel and sdist: the metadata names every dependency of
pyproject.toml, and the package data the commands need (templates, the stylesheet,
the demo's scenarios, py.typed) is inside both.

usage: python .ci/check_dist.py DIST_FOLDER
"""

from __future__ import annotations

import sys
import tarfile
import tomllib
import zipfile
from email.parser import Parser
from pathlib import Path

NEEDED = (
    "cio_anon/py.typed",
    "cio_anon/scenarios/shopper.ndjson",
    "cio_anon/web/static/",
    "cio_anon/web/templates/person.html",
)


def main() -> None:
    folder = Path(sys.argv[1])
    project = tomllib.loads(Path("pyproject.toml").read_text())["project"]
    (wheel,) = folder.glob("cio_anon-*.whl")
    (sdist,) = folder.glob("cio_anon-*.tar.gz")
    problems: list[str] = []
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        meta_name = next(n for n in names if n.endswith(".dist-info/METADATA"))
        meta = Parser().parsestr(archive.read(meta_name).decode())
    with tarfile.open(sdist) as archive:
        sdist_names = ["/".join(n.split("/")[1:]) for n in archive.getnames()]
    for what, listing in (("wheel", names), ("sdist", sdist_names)):
        for needed in NEEDED:
            if not any(name.startswith(needed) for name in listing):
                problems.append(f"the {what} has no {needed}")
    requires = " ".join(meta.get_all("Requires-Dist") or [])
    for dependency in project["dependencies"]:
        name = dependency.split(";")[0].split(">")[0].split("<")[0].split("=")[0].strip()
        if name not in requires:
            problems.append(f"the wheel's metadata does not require {name}")
    if meta["Name"] != project["name"] or meta["Version"] != project["version"]:
        problems.append(f"the wheel is {meta['Name']} {meta['Version']}")
    for problem in problems:
        print(f"dist: {problem}", file=sys.stderr)
    if problems:
        sys.exit(1)
    print(f"dist: {wheel.name} and {sdist.name} hold the package data and metadata")


if __name__ == "__main__":
    main()
