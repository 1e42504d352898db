"""``usageledger attribute``: evidence-first incident attribution over evidence lines (M1 format).

A thin command over :mod:`usageledger.attribution`: read the inputs, analyse them, then print
Rich tables for people, one JSON object (``--json``) or one JSON line per evidence line
(``--explain``). It exits 0 whatever it finds and 2 when an input cannot be read.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

import click
import orjson
from rich.console import Console
from rich.table import Table
from rich.text import Text

from usageledger.attribution import (
    DEFAULT_INCIDENT_GAP_S,
    DEFAULT_SLOW_MS,
    NO_FUNCTION,
    SMALL_UPSTREAM_SHARE,
    EvidenceLine,
    Options,
    SkipReason,
    analyze,
    parse_time_bound,
    read_lines,
    report,
)
from usageledger.attribution import explain as explain_lines
from usageledger.cli.errors import usage


class UnreadableInput(Exception):
    """An input file that cannot be opened or read (missing, a directory, no permission): a
    usage error, exit status 2, like any argument that names nothing to read."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"cannot read {path}: {reason}")


def _time_bound(_ctx: click.Context, _param: click.Parameter, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_time_bound(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc


def read_inputs(paths: Sequence[str]) -> Iterator[EvidenceLine | SkipReason]:
    """Parse every input in order, lazily (``-`` or no path at all is stdin).

    Raises :class:`UnreadableInput` when a file cannot be opened or read.
    """
    for path in paths or ("-",):
        try:
            if path == "-":
                if sys.stdin is None:  # started without a standard input (a daemon, a cron job)
                    raise UnreadableInput("-", "no standard input")
                yield from read_lines(sys.stdin.buffer, "-")
                continue
            with open(path, "rb") as stream:
                yield from read_lines(stream, path)
        except OSError as exc:
            raise UnreadableInput(path, exc.strerror or str(exc)) from exc


@click.command("attribute")
@click.argument("files", nargs=-1, metavar="[FILES|-]...")
@click.option(
    "--since", callback=_time_bound, metavar="T", help="Only lines at or after T (ISO 8601 or 2h)."
)
@click.option(
    "--until", callback=_time_bound, metavar="T", help="Only lines before T (ISO 8601 or 30m)."
)
@click.option(
    "--function", "functions", multiple=True, metavar="NAME", help="Only this function (repeat)."
)
@click.option(
    "--slow-ms",
    type=click.FloatRange(min=0, min_open=True),
    default=DEFAULT_SLOW_MS,
    show_default=True,
    metavar="MS",
    help="latency_ms at or above this is slow.",
)
@click.option(
    "--upstream-share",
    type=click.FloatRange(min=0, max=1, min_open=True),
    default=SMALL_UPSTREAM_SHARE,
    show_default=True,
    metavar="SHARE",
    help="A slow line is an app bottleneck while upstream took less than this share of it.",
)
@click.option(
    "--incident-gap",
    type=click.FloatRange(min=0),
    default=DEFAULT_INCIDENT_GAP_S,
    show_default=True,
    metavar="SECONDS",
    help="Non-ok lines further apart than this start a new incident.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON report object.")
@click.option("--explain", is_flag=True, help="Print one JSON line per M1 line: verdict, reason.")
def attribute(
    files: tuple[str, ...],
    since: datetime | None,
    until: datetime | None,
    functions: tuple[str, ...],
    slow_ms: float,
    upstream_share: float,
    incident_gap: float,
    as_json: bool,
    explain: bool,
) -> None:
    """Attribute incidents in M1 log lines to vendor, application or unknown.

    Reads JSON lines (ours or any service's) from FILES, or stdin when FILES is - or absent;
    other lines are counted as skipped. No upstream_status, no blame.

    \b
    Examples:
      usageledger attribute server.log --since 2h
      journalctl -u usageledger -o cat | usageledger attribute - --function ingest --json
    """
    options = Options(
        slow_ms=slow_ms,
        small_share=upstream_share,
        incident_gap_s=incident_gap,
        since=since,
        until=until,
        functions=frozenset(functions),
    )
    if not files and sys.stdin.isatty():
        click.echo("Reading M1 lines from stdin (Ctrl-D to end)...", err=True)
    try:
        analysis = analyze(read_inputs(files), options)
    except UnreadableInput as exc:
        usage(str(exc))
    if explain:
        for record in explain_lines(analysis):
            click.echo(orjson.dumps(record).decode())
    if as_json:
        click.echo(orjson.dumps(report(analysis, files or ("-",))).decode())
    elif not explain:
        render(report(analysis, files or ("-",)), Console(highlight=False, soft_wrap=True))


# -- the people's view -----------------------------------------------------------------------


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def _counts(counts: Mapping[str, int], limit: int = 3) -> str:
    items = list(counts.items())
    shown = ", ".join(f"{key} ×{n}" for key, n in items[:limit])
    return shown + (f", +{len(items) - limit} more" if len(items) > limit else "") or "-"


def _dominant(group: Mapping[str, Any]) -> Text:
    style = "bold red" if group["dominant"] == "unknown" else ""
    return Text(f"{group['dominant']} {group['share']:.0%}", style=style)


def _coverage_table(coverage: Mapping[str, Any]) -> Table | None:
    table = Table(title="Missing or unreadable fields", title_justify="left")
    for column in ("field", "missing", "unreadable", "where (function lines)"):
        table.add_column(column, justify="right" if column in ("missing", "unreadable") else "left")
    for name, stats in coverage["fields"].items():
        if stats["missing"] or stats["invalid"]:
            where: dict[str, int] = {}
            for counts in (stats["missing_by_function"], stats["invalid_by_function"]):
                for function, n in counts.items():
                    where[function] = where.get(function, 0) + n
            table.add_row(name, str(stats["missing"]), str(stats["invalid"]), Text(_counts(where)))
    return table if table.row_count else None


def _functions_table(functions: Sequence[Mapping[str, Any]]) -> Table:
    table = Table(title="Functions", title_justify="left")
    table.add_column("function", overflow="fold")
    table.add_column("lines", justify="right")
    table.add_column("verdicts")
    table.add_column("dominant")
    table.add_column("p50/p95 ms", justify="right")
    for group in functions:
        latency = group["latency_ms"]
        verdicts = {verdict: n for verdict, n in group["verdicts"].items() if n}
        table.add_row(
            Text(group["function"] or NO_FUNCTION),
            str(group["lines"]),
            _counts(verdicts, limit=len(verdicts)),
            _dominant(group),
            f"{_num(latency['p50'])}/{_num(latency['p95'])}",
        )
    return table


def _function_evidence(group: Mapping[str, Any]) -> Text | None:
    """Example request ids of each non-ok verdict of a function, with its codes and statuses."""
    shown = [
        f"{verdict}: {' '.join(ids)}"
        for verdict, ids in group["examples"].items()
        if verdict != "ok" and ids
    ]
    if not shown:
        return None
    return Text(
        f"{group['function'] or NO_FUNCTION} · {' · '.join(shown)}\n"
        f"  error codes {_counts(group['error_codes'])}; "
        f"upstream {_counts(group['upstream_statuses'])}"
    )


def _window(incident: Mapping[str, Any]) -> str:
    if incident["start"] is None:
        return "(no timestamps)"
    return (
        f"{incident['start'][:19].replace('T', ' ')}\n+{_num(round(incident['duration_s'], 1))} s"
    )


def _incidents_table(incidents: Sequence[Mapping[str, Any]]) -> Table:
    table = Table(title="Incidents (non-ok lines close in time)", title_justify="left")
    table.add_column("#", justify="right")
    table.add_column("start (UTC)", no_wrap=True)
    table.add_column("lines", justify="right")
    table.add_column("dominant", overflow="fold")
    table.add_column("error codes", overflow="fold")
    table.add_column("upstream", overflow="fold")
    for incident in incidents:
        table.add_row(
            str(incident["id"]),
            _window(incident),
            str(incident["lines"]),
            _dominant(incident),
            Text(_counts(incident["error_codes"])),
            Text(_counts(incident["upstream_statuses"])),
        )
    return table


def _evidence(incident: Mapping[str, Any]) -> Text:
    dominant, latency = incident["dominant"], incident["latency_ms"]
    text = (
        f"incident {incident['id']} · {dominant}: {' '.join(incident['examples'][dominant])}\n"
        f"  functions {_counts(incident['functions'])}; "
        f"latency p50/p95 {_num(latency['p50'])}/{_num(latency['p95'])} ms"
    )
    if incident["unknown_reasons"]:
        text += f"; unknown because {_counts(incident['unknown_reasons'])}"
    return Text(text)


def render(data: Mapping[str, Any], console: Console) -> None:
    """Print a report object (from :func:`usageledger.attribution.report`) as Rich tables."""
    skipped = ", ".join(f"{k} {n}" for k, n in data["skipped_reasons"].items() if n)
    console.print(
        Text(
            f"{data['lines']} M1 lines from {', '.join(data['inputs'])}; "
            f"{data['skipped']} skipped{f' ({skipped})' if skipped else ''}; "
            f"{data['filtered_out']} filtered out"
        )
    )
    if not data["lines"]:
        console.print("Nothing to attribute.")
        return
    coverage = data["coverage"]
    console.print(
        f"Field coverage: {coverage['complete']}/{data['lines']} lines "
        f"({math.floor(coverage['share'] * 100)}%) carry all eight required fields."
    )
    table = _coverage_table(coverage)
    if table is not None:
        console.print(table)
    console.print("Verdicts: " + " · ".join(f"{k} {n}" for k, n in data["verdicts"].items()))
    console.print(_functions_table(data["functions"]))
    evidence = [e for e in map(_function_evidence, data["functions"]) if e is not None]
    if evidence:
        console.print("Evidence per function (example request ids of each verdict but ok):")
        for line in evidence:
            console.print(line)
    if data["incidents"]:
        console.print(_incidents_table(data["incidents"]))
        console.print("Evidence (example request ids of the dominant verdict):")
        for incident in data["incidents"]:
            console.print(_evidence(incident))
    else:
        console.print("No incidents: every line is ok.")
    stop = data["stop_rule"]
    if stop:
        n = stop["unknown_lines"]
        where = f"{n} unknown line{'' if n == 1 else 's'}: {_counts(stop['unknown_by_function'])}"
        if stop["applies_to"]:
            where += f"; dominant in {', '.join(stop['applies_to'])}"
        console.print(
            Text(f"STOP ({where}): ", style="bold red")
            + Text(stop["text"] + f" — e.g. {' '.join(stop['examples'])}.")
        )


#: Registered by :data:`usageledger.cli.root.COMMANDS`.
commands = [attribute]
