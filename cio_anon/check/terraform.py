"""The part of Terraform's language (HCL) a Segment tracking plan is written in, as
Segment's Git sync writes a workspace's tracking plans (`tracking_plans/tp_*.tf`, with
Segment's Terraform provider): blocks with labels, attributes, and as values strings,
numbers, `true`/`false`/`null`, lists, objects, references, and `jsonencode(...)`.

Read as data, never run: a template (`"${...}"`), an operator or any other function is
not evaluated, and a file that has one is refused with where it is."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, NoReturn

from cio_anon import jsonio

_TOKEN = re.compile(
    r"""
    (?P<space>[ \t\r\n]+|\#[^\n]*|//[^\n]*|/\*.*?\*/)
  | (?P<number>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
  | (?P<name>[A-Za-z_][A-Za-z0-9_-]*)
  | (?P<string>")
  | (?P<heredoc><<-?[A-Za-z_])
  | (?P<punct>[{}\[\]()=:,.\-])
    """,
    re.VERBOSE | re.DOTALL,
)
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", '"': '"', "\\": "\\"}


class TerraformError(ValueError):
    """What cannot be read, with the line it is on."""


@dataclass(frozen=True)
class Reference:
    """A reference to something Terraform knows (`segment_tracking_plan.id-tp_1`):
    kept as written, never resolved."""

    path: str


@dataclass
class Block:
    type: str
    labels: list[str]
    line: int
    attributes: dict[str, Any] = field(default_factory=dict)
    blocks: list[Block] = field(default_factory=list)


def blocks(text: str) -> list[Block]:
    """The top-level blocks of a Terraform file (`resource "type" "name" { ... }`)."""
    _, found = _Reader(text).body(closing=None)
    return found


class _Reader:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = list(self._scan())
        self.at = 0

    # -- tokens -------------------------------------------------------------------
    def _scan(self) -> Iterator[tuple[str, str, int]]:
        position = 0
        while position < len(self.text):
            found = _TOKEN.match(self.text, position)
            if found is None:
                self._fail(position, f"{self.text[position]!r} is not Terraform")
            kind = found.lastgroup or ""
            if kind == "string":
                value, position = self._string(found.end())
                yield ("string", value, found.start())
                continue
            if kind == "heredoc":
                self._fail(found.start(), "a heredoc string (<<) is not read")
            if kind != "space":
                yield (kind, found.group(), found.start())
            position = found.end()

    def _string(self, position: int) -> tuple[str, int]:
        """A quoted string from after its opening quote: its value and where it ends."""
        out: list[str] = []
        text = self.text
        while True:
            if position >= len(text) or text[position] == "\n":
                self._fail(position, "a string is not closed")
            char = text[position]
            if char == '"':
                return "".join(out), position + 1
            if char == "\\":
                code = text[position + 1 : position + 2]
                if code in _ESCAPES:
                    out.append(_ESCAPES[code])
                    position += 2
                elif code in ("u", "U"):
                    size = 4 if code == "u" else 8
                    digits = text[position + 2 : position + 2 + size]
                    if not re.fullmatch(r"[0-9A-Fa-f]+", digits) or len(digits) != size:
                        self._fail(position, "a \\u escape needs hex digits")
                    out.append(chr(int(digits, 16)))
                    position += 2 + size
                else:
                    self._fail(position, f"the escape \\{code} is not Terraform's")
            elif text.startswith(("$${", "%%{"), position):
                out.append(text[position + 1 : position + 3])
                position += 3
            elif text.startswith(("${", "%{"), position):
                self._fail(position, "a template (${...}) is not evaluated")
            else:
                out.append(char)
                position += 1

    def _line(self, position: int) -> int:
        return self.text.count("\n", 0, position) + 1

    def _fail(self, position: int, message: str) -> NoReturn:
        raise TerraformError(f"line {self._line(position)}: {message}")

    def peek(self) -> tuple[str, str, int] | None:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def take(self, *expected: str) -> tuple[str, str, int]:
        token = self.peek()
        if token is None:
            self._fail(len(self.text), f"the file ends where {' or '.join(expected)} is due")
        kind, value, position = token
        if expected and kind not in expected and value not in expected:
            self._fail(position, f"{value!r} where {' or '.join(expected)} is due")
        self.at += 1
        return token

    # -- structure ----------------------------------------------------------------
    def body(self, closing: str | None) -> tuple[dict[str, Any], list[Block]]:
        """The attributes and blocks up to `closing` (`}`), or to the end of the file."""
        attributes: dict[str, Any] = {}
        found: list[Block] = []
        while True:
            token = self.peek()
            if token is None or token[1] == closing:
                if closing is not None:
                    self.take(closing)
                return attributes, found
            _, name, position = self.take("name")
            following = self.peek()
            if following is not None and following[1] == "=":
                self.take("=")
                attributes[name] = self.expression()
                continue
            labels = []
            while (label := self.peek()) is not None and label[0] in ("string", "name"):
                labels.append(self.take()[1])
            self.take("{")
            found.append(Block(name, labels, self._line(position), *self.body("}")))

    def expression(self) -> Any:
        kind, value, position = self.take()
        if kind == "string":
            return value
        if kind == "number":
            return float(value) if re.search(r"[.eE]", value) else int(value)
        if value == "-":
            number = self.expression()
            if not isinstance(number, int | float) or isinstance(number, bool):
                self._fail(position, "`-` before something not a number")
            return -number
        if value == "[":
            return self._sequence("]", self.expression)
        if value == "{":
            return dict(self._sequence("}", self._item))
        if kind == "name":
            return self._named(value, position)
        self._fail(position, f"{value!r} where a value is due")

    def _named(self, name: str, position: int) -> Any:
        literal = {"true": True, "false": False, "null": None}
        if name in literal:
            return literal[name]
        following = self.peek()
        if following is not None and following[1] == "(":
            self.take("(")
            arguments = self._sequence(")", self.expression)
            if name != "jsonencode" or len(arguments) != 1:
                self._fail(position, f"the function {name}() is not evaluated")
            try:
                return jsonio.dumps(arguments[0])
            except TypeError:
                self._fail(position, "jsonencode() of a reference is not evaluated")
        path = [name]
        while (dot := self.peek()) is not None and dot[1] == ".":
            self.take(".")
            path.append(self.take("name")[1])
        return Reference(".".join(path))

    def _item(self) -> tuple[str, Any]:
        """One `key = value` (or `key: value`) of an object."""
        _, key, _ = self.take("name", "string")
        self.take("=", ":")
        return key, self.expression()

    def _sequence(self, closing: str, element: Callable[[], Any]) -> list[Any]:
        """Elements up to `closing`, each followed by a comma or a new line."""
        found = []
        while (token := self.peek()) is not None and token[1] != closing:
            found.append(element())
            if (comma := self.peek()) is not None and comma[1] == ",":
                self.take(",")
        self.take(closing)
        return found
