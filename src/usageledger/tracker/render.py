"""Rich tables and a progress bar for the tracker's commands (presentation only)."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from usageledger.tracker.report import FIELDS, PERIODS
from usageledger.tracker.scan import ScanSummary

if TYPE_CHECKING:  # rich loads only where something is drawn: `report --json` never draws
    from rich.console import Console
    from rich.progress import Progress, TaskID
    from rich.table import Table

#: Scans reading less than this show no progress bar (they finish at once).
PROGRESS_THRESHOLD = 32 * 1024 * 1024
#: Narrower terminals get only the row key beside the numbers.
COMPACT_WIDTH = 150
COMPACT_FIELDS = ("input_tokens", "cached_input_tokens", "output_tokens", "total_tokens")
HEADINGS = {
    "input_tokens": "Input",
    "cached_input_tokens": "Cache read",
    "cache_write_tokens": "Cache write",
    "output_tokens": "Output",
    "reasoning_output_tokens": "Reasoning",
    "total_tokens": "Total",
}


class ScanProgress:
    """A transient bytes progress bar on a terminal, for scans of at least 32 MiB."""

    def __init__(
        self, console: Callable[[], Console], *, threshold: int = PROGRESS_THRESHOLD
    ) -> None:
        self.console = console  # made on first use: most scans are too short for a bar
        self.threshold = threshold
        self.progress: Progress | None = None
        self.task: TaskID | None = None

    def start(self, total_bytes: int, files: int) -> None:
        """Show the bar when the scan is long enough and the output is a terminal."""
        if total_bytes < self.threshold or not self.console().is_terminal:
            return
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self.progress = Progress(
            TextColumn("[bold]scanning[/bold] {task.fields[files]} files"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=self.console(),
            transient=True,
        )
        self.progress.start()
        self.task = self.progress.add_task("scan", total=total_bytes, files=files)

    def advance(self, nbytes: int) -> None:
        """Move the bar."""
        if self.progress is not None and self.task is not None:
            self.progress.advance(self.task, nbytes)

    def stop(self) -> None:
        """Remove the bar."""
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


def scan_table(summary: ScanSummary) -> Table:
    """One row per source: files, events new and updated, problems."""
    from rich.table import Table

    table = Table(title="Scan", title_justify="left")
    for heading in ("Source", "Files", "Read", "Gone", "MiB read", "New events", "Updated"):
        table.add_column(heading, justify="left" if heading == "Source" else "right")
    table.add_column("Problems", justify="right")
    for s in summary.sources.values():
        table.add_row(
            s.source,
            f"{s.files_found:,}",
            f"{s.files_read:,}",
            f"{s.files_gone:,}",
            f"{s.bytes_read / 1048576:,.1f}",
            f"{s.events_new:,}",
            f"{s.events_updated:,}",
            f"[red]{len(s.problems):,}[/red]" if s.problems else "0",
        )
    return table


def print_problems(console: Console, summary: ScanSummary) -> None:
    """Every file or line the scan could not read, and why."""
    problems = summary.problems
    if not problems:
        return
    console.print(f"[yellow]{len(problems)} line(s) or file(s) could not be read:[/yellow]")
    for p in problems:
        where = f"{p.path}:{p.line}" if p.line is not None else p.path
        console.print(f"  {where}: {p.reason}", markup=False, highlight=False)


def _n(value: int) -> str:
    return f"{value:,}"


def report_table(
    report: dict[str, Any],
    *,
    width: int = 200,
    breakdown: bool = False,
    columns: Sequence[str] | None = None,
) -> Table:
    """The report's rows and a totals row, one column per count and the cost.

    Below ``COMPACT_WIDTH`` columns only the row's key, input, cache read, output, total
    and cost are shown (the JSON always has everything); ``columns`` (count names) chooses
    the counts instead. With ``breakdown`` each row is followed by one dimmed row per source
    and model.
    """
    kind = report["report"]
    title = {
        "daily": "Daily usage",
        "weekly": "Weekly usage",
        "monthly": "Monthly usage",
        "hourly": "Usage per half-hour",
        "models": "Usage by model",
        "session": "Usage by session",
        "projects": "Usage by project",
    }[kind]
    from rich.table import Table

    table = Table(title=f"{title} ({report['timezone']})", title_justify="left", show_footer=True)
    headings, rows = _labels(kind, report)
    compact = width < COMPACT_WIDTH
    keep = 1 if compact else len(headings)
    fields = tuple(columns) if columns else COMPACT_FIELDS if compact else FIELDS
    totals = report["totals"]
    for index, heading in enumerate(headings[:keep]):
        short = index == 0 and kind in PERIODS
        footer = "Total" if index == 0 else ""
        table.add_column(heading, footer=footer, overflow="fold", no_wrap=short)
    for name in fields:
        table.add_column(HEADINGS[name], justify="right", footer=_n(totals[name]), no_wrap=True)
    table.add_column("Cost (USD)", justify="right", footer=totals["cost_usd"], no_wrap=True)
    for labels, row in rows:
        table.add_row(*labels[:keep], *(_n(row[name]) for name in fields), row["cost_usd"])
        if not breakdown:
            continue
        for part in _parts(kind, row):
            name = f"  └ {part['model']} ({part['source']})"
            blank = [""] * (keep - 1)
            table.add_row(
                name, *blank, *(_n(part[f]) for f in fields), part["cost_usd"], style="dim"
            )
    return table


def _parts(kind: str, row: dict[str, Any]) -> list[dict[str, Any]]:
    """A row's per-source-and-model tallies (none for the models report, already per model)."""
    if kind in PERIODS:
        parts: list[dict[str, Any]] = row["models"]
        return parts
    if kind in ("session", "projects"):
        found: list[dict[str, Any]] = row["breakdown"]
        return found
    return []


def report_csv(
    report: dict[str, Any], *, breakdown: bool = False, columns: Sequence[str] | None = None
) -> str:
    """The report as CSV: a header, one line per row (label columns, counts, ``cost_usd``).

    With ``breakdown`` every row is followed by its per-model lines, which carry the row's
    labels plus ``source`` and ``model`` (empty on the row's own line). No totals line: a
    spreadsheet sums the rows itself.
    """
    kind = report["report"]
    headings, rows = _labels(kind, report, csv=True)
    fields = tuple(columns) if columns else FIELDS
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    extra = ["source", "model"] if breakdown and kind != "models" else []
    writer.writerow([*headings, *extra, *fields, "cost_usd"])
    for labels, row in rows:
        numbers = [row[f] for f in fields]
        writer.writerow([*labels, *([""] * len(extra)), *numbers, row["cost_usd"]])
        if not extra:
            continue
        for part in _parts(kind, row):
            parts = [part[f] for f in fields]
            writer.writerow([*labels, part["source"], part["model"], *parts, part["cost_usd"]])
    return buffer.getvalue()


def _labels(
    kind: str, report: dict[str, Any], *, csv: bool = False
) -> tuple[list[str], list[tuple[list[str], Any]]]:
    """The label columns of a report kind and each row's labels (machine names for CSV)."""
    join = ";".join if csv else "\n".join
    if kind in PERIODS:
        plural = PERIODS[kind]
        heading = {"daily": "Day", "weekly": "Week", "monthly": "Month", "hourly": "Half-hour"}
        labelled = []
        for row in report[plural]:
            key = {"daily": row.get("day"), "monthly": row.get("month")}.get(kind)
            if kind == "weekly":
                key = row["week_start"] if csv else f"{row['week']} ({row['week_start']})"
            if kind == "hourly":
                key = row["half_hour"] if csv else row["half_hour"][:16].replace("T", " ")
            models = sorted({m["model"] for m in row["models"]})
            labelled.append(([str(key), join(models)], row))
        if csv:
            first = {"daily": "day", "weekly": "week_start", "monthly": "month"}
            return [first.get(kind, "half_hour"), "models"], labelled
        return [heading[kind], "Models"], labelled
    if kind == "models":
        return (["model", "source", "days"] if csv else ["Model", "Source", "Days"]), [
            ([row["model"], row["source"], str(row["days"])], row) for row in report["models"]
        ]
    if kind == "session":
        names = ["session_id", "source", "project", "last_event", "models"]
        return (names if csv else ["Session", "Source", "Project", "Last event", "Models"]), [
            (
                [
                    row["session_id"],
                    row["source"],
                    row["project"] or "",
                    row["last_event"] if csv else row["last_event"][:16].replace("T", " "),
                    join(row["models"]),
                ],
                row,
            )
            for row in report["sessions"]
        ]
    names = ["project", "sessions", "sources", "models"]
    return (names if csv else ["Project", "Sessions", "Sources", "Models"]), [
        (
            [
                row["project"],
                str(row["sessions"]),
                ";".join(row["sources"]) if csv else ", ".join(row["sources"]),
                join(row["models"]),
            ],
            row,
        )
        for row in report["projects"]
    ]


def unpriced_note(report: dict[str, Any]) -> str | None:
    """A line naming the models without a price (their tokens count, their cost is 0)."""
    models = report["totals"].get("unpriced_models") or []
    if not models:
        return None
    return (
        f"no price for {', '.join(models)}: their tokens are counted, their cost is not "
        "(see docs/pricing.md)"
    )


def status_table(status: dict[str, Any]) -> Table:
    """Per-source health."""
    from rich.table import Table

    table = Table(title="Sources", title_justify="left")
    for heading in ("Source", "Files found", "Scanned", "Problems", "Events", "Tokens"):
        table.add_column(heading, justify="left" if heading == "Source" else "right")
    for s in status["sources"]:
        table.add_row(
            s["source"],
            _n(s["files_found"]),
            _n(s["files_scanned"]),
            f"[red]{s['problems']:,}[/red]" if s["problems"] else "0",
            _n(s["events"]),
            _n(s["total_tokens"]),
        )
    return table
