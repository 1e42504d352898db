"""Rich tables and a progress bar for the tracker's commands (presentation only)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from usageledger.tracker.report import FIELDS
from usageledger.tracker.scan import ScanSummary

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

    def __init__(self, console: Console, *, threshold: int = PROGRESS_THRESHOLD) -> None:
        self.console = console
        self.threshold = threshold
        self.progress: Progress | None = None
        self.task: TaskID | None = None

    def start(self, total_bytes: int, files: int) -> None:
        """Show the bar when the scan is long enough and the output is a terminal."""
        if total_bytes < self.threshold or not self.console.is_terminal:
            return
        self.progress = Progress(
            TextColumn("[bold]scanning[/bold] {task.fields[files]} files"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=self.console,
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


def report_table(report: dict[str, Any], *, width: int = 200) -> Table:
    """The report's rows and a totals row, one column per count and the cost.

    Below ``COMPACT_WIDTH`` columns only the row's key, input, cache read, output, total
    and cost are shown (the JSON always has everything).
    """
    kind = report["report"]
    title = {
        "daily": "Daily usage",
        "weekly": "Weekly usage",
        "monthly": "Monthly usage",
        "models": "Usage by model",
        "session": "Usage by session",
        "projects": "Usage by project",
    }[kind]
    table = Table(title=f"{title} ({report['timezone']})", title_justify="left", show_footer=True)
    headings, rows = _labels(kind, report)
    compact = width < COMPACT_WIDTH
    keep = 1 if compact else len(headings)
    fields = COMPACT_FIELDS if compact else FIELDS
    totals = report["totals"]
    for index, heading in enumerate(headings[:keep]):
        short = index == 0 and kind in ("daily", "weekly", "monthly")
        footer = "Total" if index == 0 else ""
        table.add_column(heading, footer=footer, overflow="fold", no_wrap=short)
    for name in fields:
        table.add_column(HEADINGS[name], justify="right", footer=_n(totals[name]), no_wrap=True)
    table.add_column("Cost (USD)", justify="right", footer=totals["cost_usd"], no_wrap=True)
    for labels, row in rows:
        table.add_row(*labels[:keep], *(_n(row[name]) for name in fields), row["cost_usd"])
    return table


def _labels(kind: str, report: dict[str, Any]) -> tuple[list[str], list[tuple[list[str], Any]]]:
    """The label columns of a report kind and each row's labels."""
    if kind in ("daily", "weekly", "monthly"):
        plural = {"daily": "days", "weekly": "weeks", "monthly": "months"}[kind]
        heading = {"daily": "Day", "weekly": "Week", "monthly": "Month"}[kind]
        labelled = []
        for row in report[plural]:
            key = {"daily": row.get("day"), "monthly": row.get("month")}.get(kind)
            if kind == "weekly":
                key = f"{row['week']} ({row['week_start']})"
            models = sorted({m["model"] for m in row["models"]})
            labelled.append(([str(key), "\n".join(models)], row))
        return [heading, "Models"], labelled
    if kind == "models":
        return ["Model", "Source", "Days"], [
            ([row["model"], row["source"], str(row["days"])], row) for row in report["models"]
        ]
    if kind == "session":
        return ["Session", "Source", "Project", "Last event", "Models"], [
            (
                [
                    row["session_id"],
                    row["source"],
                    row["project"] or "",
                    row["last_event"][:16].replace("T", " "),
                    "\n".join(row["models"]),
                ],
                row,
            )
            for row in report["sessions"]
        ]
    return ["Project", "Sessions", "Sources", "Models"], [
        (
            [
                row["project"],
                str(row["sessions"]),
                ", ".join(row["sources"]),
                "\n".join(row["models"]),
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
