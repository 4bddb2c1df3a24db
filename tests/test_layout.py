"""The layout: every import runs down the layers CONTRIBUTING's module map draws, and
packages on one layer do not import each other. Lazy imports inside functions and
imports for type checking count too: they are arrows a reader follows all the same."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "cio_anon"

LAYERS = (
    ("__init__", "errors", "jsonio", "streams"),
    ("clock", "rules"),
    ("models",),
    ("store", "ingest"),
    ("service",),
    ("replay",),
    ("check", "demo"),
    ("audit",),
    ("present",),
    ("diff",),
    ("web",),
    ("server",),
    ("cli",),
    ("__main__",),
)
"""From the ground up: a part may import its own modules and the parts on lower layers."""
LAYER = {part: height for height, parts in enumerate(LAYERS) for part in parts}


def part_of(module: str) -> str:
    """The part of the house a dotted name (`cio_anon.store.base`) belongs to."""
    names = module.split(".")
    return names[1] if len(names) > 1 else "__init__"


def imported(source: str, module: str) -> set[str]:
    """The cio_anon modules (and names) `source`, the text of `module`, imports."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the importing module's package
                base = module.split(".")[: -node.level]
                name = ".".join([*base, node.module] if node.module else base)
            else:
                name = node.module or ""
            if name == "cio_anon":  # a module of the package, or a name of its own
                found.update(
                    name if alias.name.startswith("__") else f"cio_anon.{alias.name}"
                    for alias in node.names
                )
            else:
                found.add(name)
    return {name for name in found if name == "cio_anon" or name.startswith("cio_anon.")}


def wrong_way(module: str, source: str) -> list[str]:
    """The imports of `module` that run up a layer or across to a part on its own."""
    mine = part_of(module)
    wrong = []
    for target in sorted(imported(source, module)):
        theirs = part_of(target)
        if theirs == mine:
            continue
        if theirs not in LAYER:
            wrong.append(f"{module} imports {target}, a part the layers do not name")
        elif LAYER[theirs] >= LAYER[mine]:
            wrong.append(f"{module} imports {target}: {theirs} is not below {mine}")
    return wrong


def _modules() -> list[tuple[str, Path]]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        found.append((".".join(parts).removesuffix(".__init__"), path))
    return found


def test_every_part_of_the_package_has_a_layer() -> None:
    parts = {part_of(module) for module, _ in _modules() if module != "cio_anon"}
    assert parts - set(LAYER) == set()


def test_every_import_runs_down_the_layers() -> None:
    wrong = [
        line
        for module, path in _modules()
        for line in wrong_way(module, path.read_text(encoding="utf-8"))
    ]
    assert wrong == []


@pytest.mark.parametrize(
    ("module", "source", "expected"),
    [
        # the store reading how calls are read: up a layer's neighbour, across
        (
            "cio_anon.store.base",
            "from cio_anon.ingest.emit import to_record",
            ["cio_anon.store.base imports cio_anon.ingest.emit: ingest is not below store"],
        ),
        # the rules reaching up to the service, inside a function
        (
            "cio_anon.rules.placement",
            "def f():\n    from cio_anon import service\n",
            ["cio_anon.rules.placement imports cio_anon.service: service is not below rules"],
        ),
        # a relative import is resolved before it is judged
        (
            "cio_anon.service.events",
            "from ..replay import bulk",
            ["cio_anon.service.events imports cio_anon.replay: replay is not below service"],
        ),
        # down the layers, and inside one's own part: nothing to say
        ("cio_anon.replay.bulk", "from cio_anon.store import Workspace\nfrom . import apply", []),
    ],
)
def test_a_wrong_way_import_is_named(module: str, source: str, expected: list[str]) -> None:
    assert wrong_way(module, source) == expected
