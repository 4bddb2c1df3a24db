"""The `cio-anon` command: parse options, call one service function, print the result.

No SQL and no rules here. Domain errors become one sentence on stderr and exit 1 in
one place (`handle_errors`); usage errors exit 2.
"""

# No `from __future__ import annotations` here: Typer reads every command's signature at
# start-up, and annotations kept as strings would be compiled and evaluated each time.
import contextlib
import functools
import io
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, ParamSpec, TypeVar

import typer

import cio_anon
from cio_anon import jsonio
from cio_anon.clock import parse_time, resolve_now
from cio_anon.errors import CioAnonError, InvalidInput
from cio_anon.models import DEFAULT_PATH, MAX_LIMIT, ActivityType
from cio_anon.rules import EventType

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

    from cio_anon.store import Workspace

app = typer.Typer(
    name="cio-anon",
    help="Customer.io's anonymous activity and identity merging, reproduced over a local "
    "SQLite workspace.",
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_show_locals=False,
    epilog="\b\nExamples:\n  $ cio-anon demo\n  $ cio-anon replay fixtures/window.ndjson\n"
    "  $ cio-anon log --person maya@example.com | grep anon_merge\n\n"
    "\b\nExit codes: 0 success; 1 the request was understood but refused or failed; "
    "2 usage error. Each command's --help says more.",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _folder_there(value: Path | None) -> Path | None:
    """An output file's folder is looked for before the work, not after it (an audit
    writes its placements at the end)."""
    path = _file(value)
    if path is not None and not path.parent.is_dir():
        raise typer.BadParameter(f"the folder {path.parent} does not exist.")
    return value


DbOption = Annotated[
    Path,
    typer.Option(
        "--db",
        envvar="CIO_ANON_DB",
        metavar="PATH",
        help="Workspace file (env CIO_ANON_DB).",
        dir_okay=False,
    ),
]
AtOption = Annotated[
    str | None,
    typer.Option(
        "--at",
        metavar="TIME",
        help="Receive time of this call: ISO-8601 or Unix seconds (env CIO_ANON_NOW; "
        "default: now).",
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document.")]
ReportOption = Annotated[
    Path | None,
    typer.Option(
        "--output",
        metavar="FILE",
        dir_okay=False,
        callback=_folder_there,
        help="Write the report here instead of stdout (-: stdout).",
    ),
]
IdentArgument = Annotated[
    str, typer.Argument(metavar="IDENT", help="id, email or cio_<id> of the person.")
]


class Format(StrEnum):
    TEXT = "text"
    TABLE = "table"
    """The name `text` had before every command called it `text`: still taken."""
    NDJSON = "ndjson"
    CSV = "csv"

    @property
    def human(self) -> bool:
        return self in (Format.TEXT, Format.TABLE)


FormatOption = Annotated[
    Format,
    typer.Option(
        "--format",
        metavar="FORMAT",
        help="text (Rich tables on a terminal, unwrapped lines in a pipe), ndjson (one JSON "
        "record per line) or csv (with a header row).",
    ),
]


class AuditEngine(StrEnum):
    DUCKDB = "duckdb"
    SPARK = "spark"


class PlanDialect(StrEnum):
    NATIVE = "native"
    SEGMENT = "segment"
    RUDDERSTACK = "rudderstack"


class Tab(StrEnum):
    IDENTIFIED = "identified"
    ANONYMOUS = "anonymous"


LogType = StrEnum(  # type: ignore[misc]
    "LogType",
    {name.upper(): name for name in (*EventType, "invite", *ActivityType.ALL)},
)
"""The types a row of the log can have: events' and other activities'."""

EXAMPLES: dict[str, tuple[tuple[str, ...], str]] = {
    "init": (
        (
            "cio-anon init --db shop.db",
            "cio-anon init --created-at 2021-03-01 --force",
        ),
        "0 created; 1 a workspace exists (without --force) or the file is not ours",
    ),
    "settings": (
        (
            "cio-anon settings",
            "cio-anon settings --no-anonymous-merge --json",
        ),
        "0 shown or changed; 1 no workspace",
    ),
    "track": (
        (
            "cio-anon track 'Added to Cart' --anonymous-id web-7f3a --data '{\"sku\": \"TEE-01\"}'",
            "cio-anon track 'Checkout' --person ann@example.com --timestamp 2026-03-01T20:14:00Z",
            "cio-anon track 'https://example.com/join' --type page --recipient new@example.com",
        ),
        "0 stored (or ignored as a duplicate); "
        "1 refused (no identity, a limit, unknown person); 2 usage",
    ),
    "identify": (
        (
            "cio-anon identify cust-1042 --anonymous-id web-7f3a --attr email=maya@example.com",
            'cio-anon identify maya@example.com --attrs \'{"plan": "pro", "city": ""}\'',
        ),
        "0 done (warnings such as anonymous_id_taken on stderr); 1 refused; 2 usage",
    ),
    "merge": (
        (
            "cio-anon merge web@example.com app-7 --dry-run",
            "cio-anon merge web@example.com app-7",
        ),
        "0 merged (or shown); 1 a person is missing or both are the same; 2 usage",
    ),
    "purge": (
        (
            "cio-anon purge --dry-run",
            "cio-anon purge --json",
        ),
        "0 purged (or counted); 1 no workspace",
    ),
    "log": (
        (
            "cio-anon log --person maya@example.com --tab identified",
            "cio-anon log --tab anonymous --type page --limit 20",
            "cio-anon log --json | jq '.anonymous[].event_id'",
            "cio-anon log --format csv --limit 10000 > log.csv",
            "cio-anon log --format ndjson | grep maya@example.com",
        ),
        "0 shown; 1 unknown person, bad cursor or no workspace; "
        "2 usage (bad --tab, --type, --limit, --format, or --json with --format)",
    ),
    "show": (
        (
            "cio-anon show maya@example.com",
            "cio-anon show cio_00000001 --json",
            "cio-anon show maya@example.com --html maya.html",
        ),
        "0 shown; 1 no such person",
    ),
    "people": (
        (
            "cio-anon people --limit 20",
            "cio-anon people --json | jq -r '.people[].email'",
            "cio-anon people --format csv > people.csv",
        ),
        "0 listed; 1 no workspace; 2 usage",
    ),
    "explain": (
        (
            "cio-anon explain ev-4",
            "cio-anon explain ev-4 --json | jq .facts",
        ),
        "0 explained; 1 no such event",
    ),
    "delete": (
        ("cio-anon delete maya@example.com --dry-run", "cio-anon delete maya@example.com"),
        "0 deleted (or shown, with --dry-run); 1 no such person",
    ),
    "export": (
        (
            "cio-anon export > everything.ndjson",
            "cio-anon export --person lee@example.com --db support.db > lee.ndjson",
            "cio-anon export | cio-anon replay - --db copy.db",
        ),
        "0 written; 1 no workspace, no such person, or a workspace too old to export",
    ),
    "replay": (
        (
            "cio-anon replay fixtures/window.ndjson",
            "cio-anon replay day-1.ndjson day-2.ndjson --keep-going",
            "cat recorded.ndjson | cio-anon replay -",
        ),
        "0 every record applied, every expectation held; "
        "1 an invalid record or a failed expectation; 2 usage",
    ),
    "demo": (
        (
            "cio-anon demo",
            "cio-anon demo --db demo.db --json",
        ),
        "0 the scenario held; 1 it did not",
    ),
    "serve": (
        (
            "cio-anon serve --port 8080 --record calls.ndjson",
            "cio-anon serve --site-id s --api-key k --write-key w --inspect-token t",
            "cio-anon serve --host 0.0.0.0 --write-key w --allowed-host cio.test --quiet",
        ),
        "0 stopped cleanly (Ctrl-C, SIGTERM); "
        "1 cannot start (port, TLS files, record file, no credentials off loopback); 2 usage",
    ),
    "audit": (
        (
            "cio-anon audit archive/2026-03-*/part-*.ndjson.gz",
            "cio-anon audit exports/ --json | jq .rules",
            "cio-anon audit month.parquet --placements placements.parquet --memory-limit 2GB",
            "cio-anon audit s3-copy/ --engine spark --spark-master spark://host:7077",
        ),
        "0 audited, no error-level finding; 1 an error-level finding, or an export the "
        "audit cannot read or place set-based, or the engine failed (said in a sentence); "
        "2 usage",
    ),
    "ui": (
        (
            "cio-anon ui --open",
            "cio-anon ui --db support.db --port 9000",
        ),
        "0 stopped cleanly (Ctrl-C, SIGTERM); 1 no workspace, or cannot listen",
    ),
    "check": (
        (
            "cio-anon check fixtures/*.ndjson --plan plan.yaml",
            "cio-anon check recorded.ndjson --plan plan.json --format sarif --output check.sarif",
            "cat recorded.ndjson | cio-anon check - --fail-on warning",
        ),
        "0 no finding at --fail-on; 1 a finding at --fail-on; 2 a broken plan or usage",
    ),
    "diff": (
        (
            "cio-anon diff main.ndjson branch.ndjson",
            "cio-anon diff expected-outcomes.json recordings/ --format junit --output diff.xml",
            "cio-anon diff expected-outcomes.json recordings/ --accept expected-outcomes.json",
        ),
        "0 no outcome changed (or --accept); 1 an event's outcome changed; 2 a recording "
        "that cannot be read, or usage",
    ),
}
"""Each command's examples and exit codes, shown at the end of its --help."""


def epilog(name: str) -> str:
    """The end of a command's --help: examples, then exit codes (kept as written)."""
    lines, codes = EXAMPLES[name]
    shown = "\n".join(f"  $ {line}" for line in lines)
    return f"\b\nExamples:\n{shown}\n\n\b\nExit codes: {codes}."


P = ParamSpec("P")
R = TypeVar("R")


def handle_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Turn a domain error into one sentence on stderr and exit code 1."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            _refuse_undecodable(kwargs)
            return command(*args, **kwargs)
        except CioAnonError as error:
            say_error(error)
            raise typer.Exit(1) from None
        except BrokenPipeError:
            _reader_gone()

    return wrapper


READER_GONE = 141
"""The exit code when the reader of stdout stopped reading (`| head`): what a process
killed by SIGPIPE reports, as git, jq and seq do."""


def _reader_gone() -> NoReturn:
    """Stop quietly: whatever is still buffered for stdout goes nowhere, not into a
    traceback at exit."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    raise SystemExit(READER_GONE)


def _written_whole() -> None:
    """Put a buffered layer under stdout and stderr when Python runs unbuffered
    (`PYTHONUNBUFFERED`, `-u`, set in many container images). There each text stream
    writes to the bare file, and a write to a full pipe that a signal interrupts (the
    command stopped and continued, as Ctrl-Z and `fg` do) writes part of what it is
    given: Python drops the rest, and the command exits 0 with its output cut. A
    buffered writer writes the rest. Each line still goes out as it is written."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if not isinstance(getattr(stream, "buffer", None), io.RawIOBase):
            continue  # buffered already, or not a file (a test's capture)
        whole = io.BufferedWriter(io.FileIO(stream.fileno(), "w", closefd=False))
        text = io.TextIOWrapper(whole, stream.encoding, stream.errors, line_buffering=True)
        setattr(sys, name, text)


def _refuse_undecodable(values: dict[str, Any]) -> None:
    """Arguments that were not valid UTF-8 reach Python as lone surrogates; say so
    before they reach the workspace, which stores UTF-8."""
    for name, value in values.items():
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, str) and not item.isascii():
                try:
                    item.encode("utf-8")
                except UnicodeEncodeError:
                    option = (
                        name.upper()
                        if name in ("name", "identifier")
                        else "--" + name.replace("_", "-")
                    )
                    raise InvalidInput(f"The value of {option} is not valid UTF-8.") from None


def run(
    db: Path, at: str | None, operation: Callable[["Workspace", datetime], R], *, write: bool
) -> R:
    """Resolve the time, open the workspace for one transaction, run one operation."""
    from cio_anon import service

    now = resolve_now(at)
    with service.opened(db, now, write=write) as workspace:
        result = operation(workspace, now)
        created = workspace.created
    if created:  # said, not silent: a mistyped --db would otherwise go unnoticed
        typer.echo(f"Created the workspace {db}.", err=True)
    return result


@contextlib.contextmanager
def usage_errors(*errors: type[Exception]) -> Iterator[None]:
    """What these errors say, as a usage error: one sentence on stderr, exit 2 (a domain
    error is exit 1, in `handle_errors`)."""
    try:
        yield
    except errors as error:
        say_error(error)
        raise typer.Exit(2) from None


def say_error(error: Exception) -> None:
    """An error's sentence on stderr. What it quotes (a file's name, an id) is the user's:
    its control characters are shown escaped, line by line, so that it cannot drive the
    terminal."""
    from cio_anon.present.render import visible

    lines = f"Error: {error}".split("\n")
    typer.echo("\n".join(visible(line) for line in lines), err=True)


def read_fixtures(files: Iterable[Path]) -> list[Path]:
    """The fixture files replay and check read (a folder: the files under it). A file
    that is not there, or a folder with none, is a usage error, said before anything is
    read or written."""
    from cio_anon.ingest.fixtures import fixture_files

    with usage_errors(InvalidInput):
        return fixture_files(files)


def parse_json_object(text: str, *, what: str) -> dict[str, Any]:
    """A JSON object from the command line, or a sentence saying what is wrong."""
    try:
        value = jsonio.loads(text)
    except jsonio.JSONDecodeError as error:
        raise InvalidInput(f"The {what} is not valid JSON: {error}.") from None
    if not isinstance(value, dict):
        raise InvalidInput(f"The {what} must be a JSON object, not {type(value).__name__}.")
    return value


def collect_attributes(pairs: Sequence[str] = (), attrs_json: str | None = None) -> dict[str, Any]:
    """Attributes from `--attrs JSON` and repeated `--attr KEY=VALUE` (the latter win)."""
    attributes: dict[str, Any] = {}
    if attrs_json is not None:
        attributes.update(parse_json_object(attrs_json, what="--attrs value"))
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise InvalidInput(f"The attribute {pair!r} is not KEY=VALUE.")
        attributes[key.strip()] = value
    return attributes


def _file(output: Path | None) -> Path | None:
    """The file an `--output`-style option names; None for stdout: none given, or `-`,
    as a pipe's tools take it."""
    return None if output is None or str(output) == "-" else output


def write_out(text: str, output: Path | None, *, private: bool = False) -> None:
    """Text to a file, or to stdout; ending in a newline either way (nothing stays
    nothing: no annotations is an empty output). A `private` file (people's data, as a
    page of a workspace) is readable by its owner only, as the workspace is."""
    text = text if text.endswith("\n") or not text else text + "\n"
    output = _file(output)
    if output is None:
        sys.stdout.write(text)
        return
    try:
        if private:
            descriptor = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.fchmod(descriptor, 0o600)  # an existing file too
            with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
                handle.write(text)
        else:
            output.write_text(text, encoding="utf-8")
    except OSError as error:
        raise InvalidInput(f"Cannot write {output}: {error.strerror}.") from None


PIPE_WIDTH = 1_000_000
"""Output that is not a terminal is never wrapped or cut: one record, one line."""


def report_format(format: str, formats: Sequence[str], *, as_json: bool) -> str:
    """The report format a CI command was asked for (--json is --format json)."""
    if as_json and format not in ("text", "json"):
        raise typer.BadParameter(f"--json and --format {format} conflict: give one")
    fmt = "json" if as_json else format
    if fmt not in formats:
        raise typer.BadParameter(
            f"{fmt!r} is not one of {', '.join(formats)}", param_hint="--format"
        )
    return fmt


def print_report(rendered: "str | RenderableType", output: Path | None) -> None:
    """A report to `output` or stdout: text as it is, Rich output printed (to a file,
    unwrapped, as a pipe gets it)."""
    output = _file(output)
    if isinstance(rendered, str):
        write_out(rendered, output)
    elif output is None:
        _print([rendered])
    else:
        from rich.console import Console

        recorder = Console(record=True, file=io.StringIO(), width=PIPE_WIDTH, soft_wrap=True)
        recorder.print(rendered)
        write_out(recorder.export_text(), output)


def console(*, stderr: bool = False) -> "Console":
    """A console fitted to the terminal; on a pipe or a file, as wide as any line.
    (Rich's TTY_COMPATIBLE=1 or FORCE_COLOR make a pipe count as a terminal.)"""
    from rich.console import Console

    fitted = Console(highlight=False, stderr=stderr)
    if fitted.is_terminal:
        return fitted
    return Console(highlight=False, stderr=stderr, width=PIPE_WIDTH, soft_wrap=True)


def emit(
    as_json: bool,
    document: dict[str, Any],
    text: Callable[[], "RenderableType"],
    diagnostics: Sequence["RenderableType"] = (),
) -> None:
    """Print the JSON document, or the Rich rendering, on stdout; diagnostics and
    warnings on stderr (with --json too: the document also holds them)."""
    print_diagnostics(diagnostics)
    if as_json:
        sys.stdout.write(jsonio.dumps_indented(document) + "\n")
    else:
        _print([text()])


def print_diagnostics(diagnostics: Sequence["RenderableType"]) -> None:
    """Diagnostics and warnings, one a line, on stderr."""
    if diagnostics:
        _print(diagnostics, stderr=True)


def _print(renderables: Sequence["RenderableType"], *, stderr: bool = False) -> None:
    """Text (render's `Line`s) or Rich renderings, one under the other, on stdout or
    stderr."""
    if not _plain_lines(renderables, sys.stderr if stderr else sys.stdout):
        console(stderr=stderr).print(*renderables, sep="\n")


def _plain_lines(renderables: Sequence[Any], stream: Any) -> bool:
    """Write text (render's `Line`s) to a stream that is not a terminal as plain lines, as
    the console would, without loading it (start-up); False when that does not apply."""
    from cio_anon.present.render import plain_lines

    if stream.isatty() or os.environ.get("FORCE_COLOR") or os.environ.get("TTY_COMPATIBLE"):
        return False
    lines: list[str] = []
    for renderable in renderables:
        plain = plain_lines(renderable)
        if plain is None:
            return False
        lines += plain
    stream.write("".join(f"{line}\n" for line in lines))
    return True


def _refuse_json_with(format: Format, as_json: bool) -> None:
    if as_json and not format.human:
        raise typer.BadParameter(f"--json and --format {format} conflict: give one")


def write_records(
    format: Format,
    records: Iterable[dict[str, Any]],
    columns: Sequence[str],
    csv_row: Callable[[dict[str, Any]], list[object]],
) -> None:
    """Records on stdout as NDJSON, or as CSV rows under a header."""
    from cio_anon.present import documents

    if format is Format.NDJSON:
        sys.stdout.writelines(documents.ndjson_lines(records))
    else:
        sys.stdout.writelines(documents.csv_lines(columns, map(csv_row, records)))


@app.command(epilog=epilog("init"))
@handle_errors
def init(
    *,
    created_at: Annotated[
        str | None,
        typer.Option(
            metavar="TIME", help="The workspace's creation date (decides the merge default)."
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing workspace.")] = False,
    db: DbOption = DEFAULT_PATH,
    at: AtOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create a workspace. Merging is on unless it was created before 2021-07-01."""
    from cio_anon import service
    from cio_anon.present import documents, render

    now = resolve_now(at)
    created = None if created_at is None else parse_time(created_at, what="--created-at time")
    settings = service.init_workspace(db, now, created_at=created, force=force)
    emit(as_json, documents.settings_json(settings), lambda: render.settings_text(settings))


@app.command(epilog=epilog("settings"))
@handle_errors
def settings(
    *,
    anonymous_merge: Annotated[
        bool | None,
        typer.Option(
            "--anonymous-merge/--no-anonymous-merge",
            help="Turn anonymous event merging on or off.",
            show_default=False,
        ),
    ] = None,
    db: DbOption = DEFAULT_PATH,
    at: AtOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show the workspace settings, or change anonymous merging."""
    from cio_anon import service
    from cio_anon.present import documents, render

    result = run(
        db,
        at,
        lambda ws, now: service.update_settings(ws, now, anonymous_merge=anonymous_merge),
        write=anonymous_merge is not None,
    )
    emit(as_json, documents.settings_json(result), lambda: render.settings_text(result))


@app.command(epilog=epilog("track"))
@handle_errors
def track(
    name: Annotated[
        str, typer.Argument(metavar="NAME", help="Event name (a page's URL for pages).")
    ],
    *,
    person: Annotated[
        str | None, typer.Option(metavar="IDENT", help="The person's id, email or cio_<id>.")
    ] = None,
    anonymous_id: Annotated[str | None, typer.Option(metavar="A", help="An anonymous_id.")] = None,
    recipient: Annotated[
        str | None,
        typer.Option(metavar="EMAIL", help="An invite event's recipient (data.recipient)."),
    ] = None,
    type: Annotated[EventType, typer.Option("--type", help="Kind of event.")] = EventType.EVENT,
    data: Annotated[
        str | None, typer.Option(metavar="JSON", help="Event data as a JSON object.")
    ] = None,
    timestamp: Annotated[
        str | None,
        typer.Option(metavar="TIME", help="When it happened (default: the receive time)."),
    ] = None,
    event_id: Annotated[
        str | None, typer.Option(metavar="ID", help="The event's id; an id seen before is ignored.")
    ] = None,
    db: DbOption = DEFAULT_PATH,
    at: AtOption = None,
    as_json: JsonOption = False,
) -> None:
    """Record one event for a person, an anonymous_id, or an invite recipient."""
    from cio_anon import service
    from cio_anon.present import documents, render

    given = [
        flag
        for flag, value in (
            ("--person", person),
            ("--anonymous-id", anonymous_id),
            ("--recipient", recipient),
        )
        if value is not None
    ]
    if len(given) != 1:
        raise typer.BadParameter(
            "give exactly one of --person, --anonymous-id, --recipient"
            + (f" (got {', '.join(given)})" if given else ""),
            param_hint="identity",
        )
    payload = parse_json_object(data, what="--data value") if data is not None else {}
    result = run(
        db,
        at,
        lambda workspace, now: service.track(
            workspace,
            now,
            name=name,
            person=person,
            anonymous_id=anonymous_id,
            recipient=recipient,
            type=type.value,
            data=payload,
            timestamp=timestamp,
            event_id=event_id,
        ),
        write=True,
    )
    emit(
        as_json,
        documents.track_json(result),
        lambda: render.track_text(result),
        render.warnings_text(result.warnings),
    )


@app.command(epilog=epilog("identify"))
@handle_errors
def identify(
    identifier: IdentArgument,
    *,
    anonymous_id: Annotated[
        str | None, typer.Option(metavar="A", help="Assign this anonymous_id and merge its events.")
    ] = None,
    attr: Annotated[
        list[str] | None,
        typer.Option(metavar="KEY=VALUE", help="An attribute KEY=VALUE (repeatable)."),
    ] = None,
    attrs: Annotated[
        str | None, typer.Option(metavar="JSON", help="Attributes as a JSON object.")
    ] = None,
    db: DbOption = DEFAULT_PATH,
    at: AtOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create or update a person; with an anonymous_id, merge their anonymous events.

    An attribute set to "" is removed; `_update: true` refuses to create a person.
    """
    from cio_anon import service
    from cio_anon.present import documents, render

    attributes = collect_attributes(attr or [], attrs)
    result = run(
        db,
        at,
        lambda workspace, now: service.identify(
            workspace,
            now,
            identifier=identifier,
            anonymous_id=anonymous_id,
            attributes=attributes,
        ),
        write=True,
    )
    emit(
        as_json,
        documents.identify_json(result),
        lambda: render.identify_text(result),
        render.warnings_text(result.warnings),
    )


@app.command(epilog=epilog("merge"))
@handle_errors
def merge(
    primary: Annotated[str, typer.Argument(metavar="PRIMARY", help="The person who stays.")],
    secondary: Annotated[
        str, typer.Argument(metavar="SECONDARY", help="The person merged in and deleted.")
    ],
    *,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would happen; change nothing.")
    ] = False,
    db: DbOption = DEFAULT_PATH,
    at: AtOption = None,
    as_json: JsonOption = False,
) -> None:
    """Merge two people (Customer.io's Merge People). It cannot be undone."""
    from cio_anon import service
    from cio_anon.present import documents, render

    result = run(
        db,
        at,
        lambda workspace, now: service.merge_people(
            workspace, now, primary=primary, secondary=secondary, dry_run=dry_run
        ),
        write=not dry_run,
    )
    emit(as_json, documents.merge_json(result), lambda: render.merge_text(result))


@app.command(epilog=epilog("purge"))
@handle_errors
def purge(
    *,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would be deleted; delete nothing.")
    ] = False,
    db: DbOption = DEFAULT_PATH,
    at: AtOption = None,
    as_json: JsonOption = False,
) -> None:
    """Delete anonymous events that stayed unmerged past the 30-day retention."""
    from cio_anon import service
    from cio_anon.present import documents, render

    now = resolve_now(at)
    result = service.purge_in_chunks(db, now, dry_run=dry_run)
    emit(as_json, documents.purge_json(result), lambda: render.purge_text(result))


@app.command(epilog=epilog("log"))
@handle_errors
def log(
    *,
    person: Annotated[
        str | None, typer.Option(metavar="IDENT", help="Only this person's activity.")
    ] = None,
    anonymous_id: Annotated[
        str | None, typer.Option(metavar="A", help="Only this anonymous_id.")
    ] = None,
    tab: Annotated[
        Tab | None,
        typer.Option(metavar="TAB", help="identified or anonymous (default: both)."),
    ] = None,
    type: Annotated[
        LogType | None,
        typer.Option(
            "--type",
            metavar="TYPE",
            help="Only this type: event, page, screen, invite, anon_merge, profile_create, "
            "profile_merge, attribute_change, failed_attribute_change.",
        ),
    ] = None,
    limit: Annotated[
        int, typer.Option(metavar="N", min=1, max=MAX_LIMIT, help="Rows per tab.")
    ] = 50,
    before: Annotated[
        str | None,
        typer.Option(metavar="CURSOR", help="Continue a tab from the `next` cursor of a page."),
    ] = None,
    db: DbOption = DEFAULT_PATH,
    at: AtOption = None,
    as_json: JsonOption = False,
    format: FormatOption = Format.TEXT,
) -> None:
    """The activity log: the Identified and Anonymous tabs, newest first."""
    from cio_anon import service
    from cio_anon.present import documents, render

    _refuse_json_with(format, as_json)
    page = run(
        db,
        at,
        lambda workspace, now: service.activity_log(
            workspace,
            now,
            person=person,
            anonymous_id=anonymous_id,
            tab=None if tab is None else tab.value,
            type=None if type is None else type.value,
            limit=limit,
            before=before,
        ),
        write=False,
    )
    if format.human:
        emit(as_json, documents.log_json(page), lambda: render.log_text(page))
        return
    write_records(
        format, documents.log_records(page), documents.LOG_CSV_COLUMNS, documents.log_csv_row
    )
    for name in service.TABS:
        if cursor := page.next_of(name):
            typer.echo(f"More {name} rows: --before {cursor}", err=True)


@app.command(epilog=epilog("show"))
@handle_errors
def show(
    identifier: IdentArgument,
    *,
    html: Annotated[
        Path | None,
        typer.Option(
            "--html",
            metavar="FILE",
            dir_okay=False,
            callback=_folder_there,
            help="Write the person's page (both tabs) as one self-contained HTML file.",
        ),
    ] = None,
    db: DbOption = DEFAULT_PATH,
    at: AtOption = None,
    as_json: JsonOption = False,
) -> None:
    """One profile: identifiers, attributes, anonymous ids, event counts, merge history."""
    from cio_anon import service
    from cio_anon.present import documents, render

    if html is None:
        profile = run(
            db, at, lambda ws, now: service.show(ws, now, identifier=identifier), write=False
        )
        emit(as_json, documents.profile_json(profile), lambda: render.profile_text(profile))
        return
    from cio_anon import web

    def page_and_profile(ws: "Workspace", now: datetime) -> tuple[str, Any]:
        page = web.person_page(ws, now, identifier, standalone=True, label=str(db))
        return page, service.show(ws, now, identifier=identifier) if as_json else None

    page, profile = run(db, at, page_and_profile, write=False)
    write_out(page, html, private=True)
    typer.echo(f"Wrote {html}", err=True)
    if profile is not None:  # --json: the profile as well, from the same reading
        emit(True, documents.profile_json(profile), lambda: render.profile_text(profile))


@app.command(epilog=epilog("people"))
@handle_errors
def people(
    *,
    limit: Annotated[
        int,
        typer.Option(metavar="N", min=1, max=MAX_LIMIT, help="How many people to list."),
    ] = 100,
    db: DbOption = DEFAULT_PATH,
    at: AtOption = None,
    as_json: JsonOption = False,
    format: FormatOption = Format.TEXT,
) -> None:
    """List people, newest first, with their event counts."""
    from cio_anon import service
    from cio_anon.present import documents, render

    _refuse_json_with(format, as_json)
    found = run(db, at, lambda ws, _: service.list_people(ws, limit=limit), write=False)
    if format.human:
        emit(as_json, documents.people_json(found), lambda: render.people_text(found))
    else:
        records = documents.people_records(found)
        write_records(format, records, documents.PEOPLE_CSV_COLUMNS, documents.person_csv_row)


@app.command(epilog=epilog("explain"))
@handle_errors
def explain(
    event_id: Annotated[str, typer.Argument(metavar="EVENT_ID", help="The event's id.")],
    *,
    db: DbOption = DEFAULT_PATH,
    at: AtOption = None,
    as_json: JsonOption = False,
) -> None:
    """Why an event is where it is: its status, the rule code, and the times behind it."""
    from cio_anon import service
    from cio_anon.present import documents, render

    explanation = run(
        db, at, lambda ws, now: service.explain(ws, now, event_id=event_id), write=False
    )
    emit(as_json, documents.explain_json(explanation), lambda: render.explain_text(explanation))


@app.command(epilog=epilog("delete"))
@handle_errors
def delete(
    identifier: IdentArgument,
    *,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would be deleted; delete nothing.")
    ] = False,
    db: DbOption = DEFAULT_PATH,
    at: AtOption = None,
    as_json: JsonOption = False,
) -> None:
    """Delete a person with their events and activities; their anonymous ids stay
    assigned, to nobody. It cannot be undone: --dry-run shows what would go."""
    from cio_anon import service
    from cio_anon.present import documents, render

    result = run(
        db,
        at,
        lambda ws, now: service.delete_person(ws, now, identifier=identifier, dry_run=dry_run),
        write=not dry_run,
    )
    emit(as_json, documents.delete_json(result), lambda: render.delete_text(result))


@app.command(epilog=epilog("export"))
@handle_errors
def export(
    *,
    person: Annotated[
        str | None,
        typer.Option(
            metavar="IDENT",
            help="Only the calls that made this person's history (and settings, purges).",
        ),
    ] = None,
    db: DbOption = DEFAULT_PATH,
    at: AtOption = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON array (also a fixture) instead of NDJSON.")
    ] = False,
) -> None:
    """Write the workspace (or one person's history) as a replayable fixture: NDJSON on
    stdout, the calls it was given in order, each with its receive time."""
    from cio_anon import service

    def write(workspace: "Workspace", _: datetime) -> None:
        lines = (jsonio.dumps(record) for record in service.export(workspace, person=person))
        if not as_json:
            sys.stdout.writelines(f"{line}\n" for line in lines)
            return
        sys.stdout.write("[")
        for index, line in enumerate(lines):
            sys.stdout.write(f"{',' if index else ''}\n{line}")
        sys.stdout.write("\n]\n")

    run(db, at, write, write=False)


@app.command(epilog=epilog("replay"))
@handle_errors
def replay(
    files: Annotated[
        list[Path],
        typer.Argument(
            metavar="FILE...",
            help="Fixture files: NDJSON (gzipped too) or a JSON array of records; a folder "
            "is every fixture file under it.",
        ),
    ],
    *,
    keep_going: Annotated[
        bool,
        typer.Option("--keep-going", help="Apply the valid records; list the invalid ones."),
    ] = False,
    db: DbOption = DEFAULT_PATH,
    at: AtOption = None,
    as_json: JsonOption = False,
) -> None:
    """Apply fixture files in order, all or nothing per file; check their expectations.

    Exits 1 when a record is invalid or an expectation fails.
    """
    from cio_anon import replay as replay_module
    from cio_anon.present import documents, render

    files = read_fixtures(files)
    now = resolve_now(at)
    with _progress(files) as advance:
        summary = replay_module.replay_into(db, now, files, keep_going=keep_going, progress=advance)
    emit(
        as_json,
        documents.replay_json(summary),
        lambda: render.replay_text(summary),
        render.replay_diagnostics(summary),
    )
    if not summary.ok:
        raise typer.Exit(1)


@contextlib.contextmanager
def _progress(files: list[Path]) -> Iterator[Callable[[int], None] | None]:
    """A progress bar on stderr for large replays, when stderr is a terminal."""
    from cio_anon.ingest.fixtures import byte_size

    total = byte_size(files)
    if not sys.stderr.isatty() or total is None or total < PROGRESS_THRESHOLD:
        yield None
        return
    from rich.console import Console
    from rich.progress import Progress

    with Progress(console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("Replaying", total=total)
        yield lambda n: bar.advance(task, n)


@contextlib.contextmanager
def _steps() -> Iterator[tuple[Callable[[str, float | None], None] | None, Callable[[str], None]]]:
    """For work told in steps: a progress bar on stderr, when it is a terminal (each
    step's name, and its bar when how far it is is known; a pulse when not), and where
    to say what the user should know meanwhile (a line on stderr, above the bar)."""
    if not sys.stderr.isatty():
        yield None, lambda text: typer.echo(text, err=True)
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), TaskProgressColumn())
    with Progress(
        *columns, TimeElapsedColumn(), console=Console(stderr=True), transient=True
    ) as bar:
        task = bar.add_task("Starting", total=None)

        def show(step: str, fraction: float | None) -> None:
            if fraction is None:
                bar.update(task, description=step, total=None, completed=0)
            else:
                bar.update(task, description=step, total=1.0, completed=fraction)

        yield show, lambda text: bar.console.print(text, markup=False, highlight=False)


PROGRESS_THRESHOLD = 1_000_000
"""Bytes of fixtures above which a terminal gets a progress bar (sized by bytes: the
files are read once, as they are replayed)."""


@app.command(epilog=epilog("demo"))
@handle_errors
def demo(
    *,
    db: Annotated[
        Path | None,
        typer.Option(
            "--db",
            metavar="PATH",
            dir_okay=False,
            help="Keep the demo workspace here (default: a temporary file).",
        ),
    ] = None,
    at: AtOption = None,
    as_json: JsonOption = False,
) -> None:
    """Replay the bundled shopper scenario into a fresh workspace; show both tabs and
    the shopper's profile."""
    from cio_anon import demo as demo_module
    from cio_anon.present import documents, render

    now = resolve_now(at)
    with demo_module.workspace_path(db) as path:
        result = demo_module.run(path, now, show_at=now if at is not None else None)
    emit(as_json, documents.demo_json(result), lambda: render.demo_text(result))
    if not result.summary.ok:
        raise typer.Exit(1)


@app.command(epilog=epilog("serve"))
@handle_errors
def serve(
    *,
    host: Annotated[str, typer.Option(metavar="HOST", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(metavar="PORT", help="Port (0: any free one).")] = 8080,
    record: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE",
            dir_okay=False,
            help="Append every accepted request to FILE as a fixture record.",
        ),
    ] = None,
    site_id: Annotated[
        str | None,
        typer.Option(
            metavar="ID",
            envvar="CIO_ANON_SITE_ID",
            help="Track API Basic auth user, with --api-key (env CIO_ANON_SITE_ID).",
        ),
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(
            metavar="KEY",
            envvar="CIO_ANON_API_KEY",
            help="Track API Basic auth password, with --site-id (env CIO_ANON_API_KEY; an "
            "option's value is visible in the process list, the environment's is not).",
        ),
    ] = None,
    write_key: Annotated[
        str | None,
        typer.Option(
            metavar="KEY",
            envvar="CIO_ANON_WRITE_KEY",
            help="Data Pipelines write key; opens the APIs only (env CIO_ANON_WRITE_KEY).",
        ),
    ] = None,
    inspect_token: Annotated[
        str | None,
        typer.Option(
            metavar="TOKEN",
            envvar="CIO_ANON_INSPECT_TOKEN",
            help="The token the inspection API and the pages need once any credential is "
            "given: Bearer TOKEN, or the Basic password (env CIO_ANON_INSPECT_TOKEN).",
        ),
    ] = None,
    allowed_host: Annotated[
        list[str] | None,
        typer.Option(
            metavar="NAME",
            help="Also answer requests whose Host header is NAME (repeatable).",
        ),
    ] = None,
    cors_origin: Annotated[
        list[str] | None,
        typer.Option(
            metavar="ORIGIN",
            help="Also take the APIs' calls from web pages of ORIGIN, e.g. "
            "http://myapp.test:3000 (repeatable; loopback pages always may).",
        ),
    ] = None,
    decisions: Annotated[
        bool | None,
        typer.Option(
            "--decisions/--no-decisions",
            help="One line per event and identify on stdout as they arrive (default: on a "
            "terminal).",
        ),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="No access log on stderr.")] = False,
    clock_start: Annotated[
        str | None,
        typer.Option(metavar="TIME", help="Let the clock run from TIME instead of now."),
    ] = None,
    tls_cert: Annotated[
        Path | None, typer.Option(metavar="PEM", dir_okay=False, help="Serve HTTPS: certificate.")
    ] = None,
    tls_key: Annotated[
        Path | None, typer.Option(metavar="PEM", dir_okay=False, help="Serve HTTPS: key.")
    ] = None,
    db: DbOption = DEFAULT_PATH,
    at: Annotated[
        str | None,
        typer.Option(metavar="TIME", help="Receive every request at this fixed time (tests)."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Serve Customer.io's Track API v1/v2 and Data Pipelines locally — to server clients,
    web pages running the browser SDKs (CORS for loopback pages and --cors-origin) and
    apps — plus an inspection API under /_cio-anon/. With any credential given, every
    route needs one. One access log line per request on stderr. Ctrl-C or SIGTERM stops
    it cleanly."""
    from cio_anon import server

    half = server.half_a_pair(site_id, api_key)
    if half:  # a usage error (exit 2), found where `serve` checks it
        raise typer.BadParameter(half)
    config = server.ServerConfig(
        db=db,
        host=host,
        port=port,
        record=record,
        site_id=site_id,
        api_key=api_key,
        write_key=write_key,
        inspect_token=inspect_token,
        allowed_hosts=tuple(allowed_host or ()),
        quiet=quiet,
        fixed_now=None if at is None else parse_time(at, what="--at time"),
        clock_start=None if clock_start is None else parse_time(clock_start, what="--clock-start"),
        tls_cert=tls_cert,
        tls_key=tls_key,
        cors_origins=tuple(cors_origin or ()),
        decisions=sys.stdout.isatty() and not as_json if decisions is None else decisions,
    )
    running = server.Server(config)
    if as_json:
        typer.echo(jsonio.dumps({"listening": running.url, "workspace": str(db)}))
    else:  # one unwrapped line first: scripts wait for it
        typer.echo(f"cio-anon serve: listening on {running.url}, writing {db}")
        typer.echo("\n".join(running.browser_setup()))
    sys.stdout.flush()
    server.run_until_stopped(running)


@app.command(epilog=epilog("ui"))
@handle_errors
def ui(
    *,
    port: Annotated[int, typer.Option(metavar="PORT", help="Port (0: any free one).")] = 8081,
    open_browser: Annotated[
        bool, typer.Option("--open", help="Open the view in the default web browser.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="No access log on stderr.")] = False,
    db: DbOption = DEFAULT_PATH,
    at: AtOption = None,
    as_json: JsonOption = False,
) -> None:
    """The web view of a workspace, read-only, on loopback: people, a person's activity
    log with its Identified and Anonymous tabs, each event's explanation."""
    from cio_anon import server

    config = server.ServerConfig(
        db=db,
        port=port,
        quiet=quiet,
        pages_only=True,
        fixed_now=None if at is None else parse_time(at, what="--at time"),
    )
    running = server.Server(config)
    if as_json:
        typer.echo(jsonio.dumps({"url": f"{running.url}/", "workspace": str(db)}))
    else:  # one unwrapped line: scripts wait for it
        typer.echo(f"cio-anon ui: {running.url}/ shows {db}")
    sys.stdout.flush()
    if open_browser:
        import webbrowser

        webbrowser.open(f"{running.url}/")
    server.run_until_stopped(running)


@app.command(epilog=epilog("audit"))
@handle_errors
def audit(
    exports: Annotated[
        list[str],
        typer.Argument(
            metavar="EXPORT...",
            help="Data Pipelines exports: NDJSON (gzipped too), JSON arrays or Parquet; "
            "files, globs or folders.",
        ),
    ],
    *,
    placements: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE",
            dir_okay=False,
            callback=_folder_there,
            help="Write one row per event (Parquet) here.",
        ),
    ] = None,
    engine: Annotated[
        AuditEngine,
        typer.Option(
            "--engine", help="duckdb (embedded) or spark (pip install 'cio-anon[spark]')."
        ),
    ] = AuditEngine.DUCKDB,
    memory_limit: Annotated[
        str | None,
        typer.Option(
            metavar="SIZE",
            help="The whole process's memory, e.g. 2GB, at least 320MiB: DuckDB gets it less "
            "what the process needs beside it (256 MiB, or 35 %), and spills to disk beyond.",
        ),
    ] = None,
    spark_master: Annotated[
        str | None,
        typer.Option(metavar="URL", help="Spark's master (default: local, every core)."),
    ] = None,
    format: Annotated[
        str,
        typer.Option(
            "--format",
            metavar="FORMAT",
            help="text, json, or the findings as junit, sarif, github.",
        ),
    ] = "text",
    output: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE",
            dir_okay=False,
            callback=_folder_there,
            help="Write junit/sarif/github here (-: stdout).",
        ),
    ] = None,
    db: Annotated[
        Path | None,
        typer.Option(
            "--db",
            "--workspace",
            metavar="PATH",
            dir_okay=False,
            callback=_folder_there,
            help="Also replay the exports into this workspace (for log, show, explain, ui); "
            "none by default, and CIO_ANON_DB is not read.",
        ),
    ] = None,
    at: AtOption = None,
    as_json: JsonOption = False,
) -> None:
    """The same placement rules, set-based on DuckDB or Spark, over exports too large for
    a workspace: events per rule, per day and per source, and identity findings."""
    from cio_anon import audit as audit_module
    from cio_anon.present import documents, render

    if engine is AuditEngine.DUCKDB and spark_master:
        raise typer.BadParameter("--spark-master goes with --engine spark")
    if engine is AuditEngine.SPARK and memory_limit:
        raise typer.BadParameter("--memory-limit goes with --engine duckdb")
    if memory_limit:
        try:
            audit_module.duckdb_budget(memory_limit)
        except CioAnonError as error:
            raise typer.BadParameter(str(error)) from None
    options = (
        {"memory_limit": memory_limit} if engine is AuditEngine.DUCKDB else {"master": spark_master}
    )
    if as_json and format not in ("text", "json"):
        raise typer.BadParameter(f"--json and --format {format} conflict: give one")
    fmt = "json" if as_json else format
    if fmt not in ("text", "json"):  # the findings as `check` writes them
        from cio_anon.check import report as report_module

        if fmt not in report_module.FORMATS:
            raise typer.BadParameter(f"{fmt!r} is not one of {', '.join(report_module.FORMATS)}")
    paths = audit_module.exports(exports)
    with _steps() as (progress, notice):
        report = audit_module.audit(
            paths,
            engine_name=engine.value,
            placements_out=placements,
            progress=progress,
            notice=notice,
            **options,
        )
    if db is not None:
        audit_module.materialize(paths, db, resolve_now(at))
    if fmt in ("text", "json"):
        emit(fmt == "json", documents.audit_json(report), lambda: render.audit_text(report))
    else:
        from cio_anon.check import report as report_module

        write_out(report_module.render(report.as_check_report(), fmt), output)
    if any(finding.severity == "error" for finding in report.findings):
        raise typer.Exit(1)


plan_app = typer.Typer(
    help="Tracking plans for `check`.",
    epilog="\b\nExamples:\n  $ cio-anon plan infer fixtures/*.ndjson --output plan.yaml",
    no_args_is_help=True,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(plan_app, name="plan")


@app.command(epilog=epilog("check"))
@handle_errors
def check(
    fixtures: Annotated[
        list[Path],
        typer.Argument(
            metavar="FIXTURE...",
            help="Fixture files to replay and check (gzipped too; a folder: every one under it).",
        ),
    ],
    *,
    plan: Annotated[
        Path | None,
        typer.Option(
            metavar="PLAN",
            help="A tracking plan: cio-anon YAML, Segment Protocols JSON (or Git sync's "
            "tracking_plans/tp_ID.tf), or a RudderStack data catalog (a YAML file, or a "
            "folder of them); -: standard input.",
        ),
    ] = None,
    format: Annotated[
        str, typer.Option("--format", metavar="FORMAT", help="text, json, junit, sarif or github.")
    ] = "text",
    output: ReportOption = None,
    fail_on: Annotated[
        str, typer.Option(metavar="LEVEL", help="Exit 1 at this severity: error or warning.")
    ] = "error",
    baseline: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE",
            dir_okay=False,
            help="Findings accepted before (written by --write-baseline): counted, not failed.",
        ),
    ] = None,
    write_baseline: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE",
            dir_okay=False,
            callback=_folder_there,
            help="Write this run's findings as the baseline, and exit 0.",
        ),
    ] = None,
    max_findings: Annotated[
        int,
        typer.Option(
            metavar="N",
            min=0,
            help="Text: list at most N rows of each code (0: all); the same finding about "
            "many calls is one row.",
        ),
    ] = 20,
    at: AtOption = None,
    as_json: JsonOption = False,
) -> None:
    """Replay fixtures into a throwaway workspace and report tracking-plan, naming,
    privacy, payload and identity findings, the counts by code first. Exit 1 when a new
    finding (not in --baseline) reaches --fail-on, 2 for a broken plan."""
    from cio_anon import check as check_module
    from cio_anon.check import plans as plan_module
    from cio_anon.check import report
    from cio_anon.ingest.fixtures import STDIN
    from cio_anon.rules.findings import SEVERITIES

    fmt = report_format(format, report.FORMATS, as_json=as_json)
    if fail_on not in SEVERITIES:
        raise typer.BadParameter("use error or warning", param_hint="--fail-on")
    fixtures = read_fixtures(fixtures)
    if plan == STDIN and STDIN in fixtures:
        raise typer.BadParameter(
            "the fixtures are read from standard input (-): give the plan as a file",
            param_hint="--plan",
        )
    with usage_errors(plan_module.PlanError):
        loaded = None if plan is None else plan_module.load_plan(plan)
    with _progress(fixtures) as advance:
        found = check_module.check(fixtures, loaded, resolve_now(at), progress=advance)
    if write_baseline is not None:
        write_out(jsonio.dumps_indented(check_module.baseline_json(found)), write_baseline)
        typer.echo(
            f"Wrote {len(found.findings):,} finding(s) to the baseline {write_baseline}.",
            err=True,
        )
        return
    if baseline is not None:
        check_module.accept_known(found, baseline)
    if fmt == "text":
        from cio_anon.present import render

        print_report(render.check_text(found, max_findings), output)
    else:
        print_report(report.render(found, fmt, fail_on), output)
    if found.fails(fail_on):
        raise typer.Exit(1)


@app.command(name="diff", epilog=epilog("diff"))
@handle_errors
def diff_command(
    base: Annotated[
        Path,
        typer.Argument(
            metavar="BASE",
            help="The base run: a recording (NDJSON, gzipped too, or a folder of them) or "
            "an outcomes file written by --accept.",
        ),
    ],
    new: Annotated[
        Path, typer.Argument(metavar="NEW", help="The new run: a recording, or an outcomes file.")
    ],
    *,
    format: Annotated[
        str, typer.Option("--format", metavar="FORMAT", help="text, json, junit or github.")
    ] = "text",
    output: ReportOption = None,
    html: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE",
            dir_okay=False,
            callback=_folder_there,
            help="Also write a side-by-side HTML page.",
        ),
    ] = None,
    accept: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE",
            dir_okay=False,
            callback=_folder_there,
            help="Write the new run's outcomes here, as the expected ones, and exit 0.",
        ),
    ] = None,
    at: AtOption = None,
    as_json: JsonOption = False,
) -> None:
    """Replay two runs of one journey and report every event whose person, status, rule
    or campaign eligibility changed, with the facts that explain it. Identifiers are
    matched by order of appearance, so runs made with fresh ids compare. Exit 1 when an
    outcome changed."""
    from cio_anon import diff as diff_module
    from cio_anon.diff import report

    fmt = report_format(format, report.FORMATS, as_json=as_json)
    now = resolve_now(at)
    with usage_errors(InvalidInput):
        found = diff_module.compare(diff_module.load([base], now), diff_module.load([new], now))
    print_diagnostics(report.diagnostics(found))
    rendered = report.render(found, fmt)
    print_report(rendered, output)
    if html is not None:
        write_out(report.as_html(found), html, private=True)
    if accept is not None:
        write_out(jsonio.dumps_indented(found.new.as_json()), accept)
        typer.echo(f"Accepted: {len(found.new.events):,} outcomes written to {accept}.", err=True)
        return
    if found.differs:
        raise typer.Exit(1)


@plan_app.command(
    "infer",
    epilog="\b\nExamples:\n  $ cio-anon plan infer fixtures/shopper.ndjson\n"
    "  $ cio-anon plan infer recorded.ndjson --output plan.yaml\n"
    "  $ cio-anon plan infer recorded.ndjson --dialect segment --output plan.json\n\n"
    "\b\nExit codes: 0 written; 1 a fixture could not be read or written; 2 usage.",
)
@handle_errors
def plan_infer(
    fixtures: Annotated[
        list[Path],
        typer.Argument(
            metavar="FIXTURE...",
            dir_okay=False,
            help="Fixture files whose traffic the plan describes.",
        ),
    ],
    *,
    output: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE",
            dir_okay=False,
            callback=_folder_there,
            help="Write the plan here instead of stdout (-: stdout).",
        ),
    ] = None,
    dialect: Annotated[
        PlanDialect,
        typer.Option(
            "--dialect",
            help="native (cio-anon YAML), segment (Protocols JSON) or rudderstack (data "
            "catalog YAML: properties, events and a tracking plan).",
        ),
    ] = PlanDialect.NATIVE,
    at: AtOption = None,
    as_json: JsonOption = False,
) -> None:
    """Write a starting plan from the events, property types and always-present
    properties the fixtures send, in the dialect your team uses."""
    from cio_anon import check as check_module
    from cio_anon.check import plans as plan_module

    if as_json and dialect is not PlanDialect.NATIVE:
        raise typer.BadParameter(f"--json and --dialect {dialect} conflict: give one")
    inferred = check_module.infer_plan(fixtures, resolve_now(at))
    if as_json:
        write_out(jsonio.dumps_indented(inferred), output)
    else:
        write_out(plan_module.written(inferred, dialect.value), output)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"cio-anon {cio_anon.__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Customer.io's anonymous activity and identity merging, reproduced over a local
    SQLite workspace."""


def main() -> None:
    """Console entry point. A reader that stops reading ends the command quietly with
    READER_GONE, also when what is left in stdout's buffer meets the closed pipe."""
    _written_whole()
    try:
        app()
    except SystemExit as done:
        if done.code in (0, None):
            try:
                sys.stdout.flush()
            except BrokenPipeError:
                _reader_gone()
        raise
