"""Operations commands: ``replay``, ``verify``, ``backfill``, ``plans``, ``retention``.

Thin commands over :mod:`usageledger.ops`: parse options, call one job, print. Progress bars go
to stderr, results to stdout, evidence lines to ``USAGELEDGER_LOG_FILE``. A refused or failed job
exits 1 with its message (2 when what it refuses is its own input: a range, a plan file);
``verify`` exits 1 when it finds any difference. ``db copy`` lives
with the ``db`` group (:mod:`usageledger.cli.db`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import click

from usageledger.buckets import COUNT_COLUMNS, iso_utc
from usageledger.cli.env import Env, database, now_ms, pass_env
from usageledger.cli.errors import OPERATIONAL, exit_with, run
from usageledger.cli.jobs import job_log, progress
from usageledger.ops import backfill as backfill_ops
from usageledger.ops.plan_file import parse_plan_file
from usageledger.ops.replay import replay as run_replay
from usageledger.ops.retention import (
    DEFAULT_RECEIPTS_DAYS,
    DEFAULT_REVISIONS_DAYS,
    run_retention,
)
from usageledger.ops.scope import DEFAULT_CHUNK_DAYS, MAX_CHUNK_DAYS
from usageledger.ops.verify import verify as run_verify
from usageledger.source_registry import SourceRegistry


def _day(value: datetime | None) -> date | None:
    return value.date() if value is not None else None


def _scope_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    day = click.DateTime(formats=["%Y-%m-%d"])
    for decorator in reversed(
        [
            click.option("--user", "user_name", default=None, help="Only this user (by name)."),
            click.option("--from", "first", type=day, default=None, help="First local day."),
            click.option("--to", "last", type=day, default=None, help="Last local day."),
            click.option(
                "--chunk-days",
                type=click.IntRange(1, MAX_CHUNK_DAYS),
                default=DEFAULT_CHUNK_DAYS,
                show_default=True,
                help="Local days per transaction.",
            ),
        ]
    ):
        fn = decorator(fn)
    return fn


@click.command("replay")
@_scope_options
@pass_env
def replay(
    env: Env,
    user_name: str | None,
    first: datetime | None,
    last: datetime | None,
    chunk_days: int,
) -> None:
    """Rebuild usage_buckets and usage_daily from bucket_revisions.

    Each bucket takes its highest revision; each local day's rollup is recomputed the way
    ingest does it. Runs per user in chunks of local days (one short transaction each), so
    uploads continue meanwhile; running it again changes nothing. Days are inclusive local
    days in each user's time zone; without --from/--to, the whole history.

    \b
    Examples:
      usageledger replay
      usageledger replay --user alice --from 2026-01-01 --to 2026-03-31
    """
    database_ = database(env)
    with job_log(env) as logger, progress("user") as bar:
        report = run(
            lambda: run_replay(
                database_,
                user=user_name,
                first=_day(first),
                last=_day(last),
                chunk_days=chunk_days,
                evidence=logger,
                progress=bar,
            )
        )
    click.echo(
        f"replayed {report.users} user(s) in {report.chunks} chunk(s): "
        f"{report.buckets_written} bucket(s) rewritten, {report.buckets_deleted} removed "
        f"(no revision), {report.daily_rows} rollup row(s) rebuilt"
    )


@click.command("verify")
@_scope_options
@pass_env
def verify(
    env: Env,
    user_name: str | None,
    first: datetime | None,
    last: datetime | None,
    chunk_days: int,
) -> None:
    """Compare usage_buckets and usage_daily with a fresh rebuild; exit 1 on any difference.

    Read-only. Prints one line per difference: table, user, bucket start or local day,
    device, source, model, the stored values and the expected ones (only the fields that
    differ; "missing" for a row that should or should not exist). `usageledger replay`
    repairs every difference it reports.

    \b
    Examples:
      usageledger verify
      usageledger verify --user alice --from 2026-11-01 --to 2026-11-30
    """
    database_ = database(env)
    with job_log(env) as logger, progress("user") as bar:
        report = run(
            lambda: run_verify(
                database_,
                user=user_name,
                first=_day(first),
                last=_day(last),
                chunk_days=chunk_days,
                evidence=logger,
                progress=bar,
            )
        )
    for drift in report.drifts:
        stored, expected = drift.describe()
        click.echo(
            f"{drift.table}\tuser={drift.user}\tat={drift.at}\tdevice={drift.device}\t"
            f"source={drift.source}\tmodel={drift.model}\tstored: {stored}\texpected: {expected}"
        )
    summary = (
        f"checked {report.users} user(s), {report.buckets} bucket(s), {report.days} rollup row(s): "
    )
    if report.clean:
        click.echo(summary + "no difference")
        return
    click.echo(summary + f"{len(report.drifts)} difference(s); run `usageledger replay`")
    exit_with(OPERATIONAL)


@click.group("backfill")
def backfill() -> None:
    """Change a device's buckets safely: plan, apply, roll back.

    A plan records what will change and the checksums before and after; apply refuses if
    the data changed since the plan, snapshots what it replaces and writes new revisions;
    rollback restores the snapshot. See `usageledger plans` to review plans.

    \b
    Example:
      usageledger backfill plan --file fix.json --reason "codex double count, issue 42"
      usageledger backfill apply 0b6f…
      usageledger backfill rollback 0b6f…
    """


@backfill.command("plan")
@click.option(
    "--file",
    "path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The plan file (JSON, see docs/operations.md).",
)
@click.option("--reason", required=True, help="Why; kept with the plan for audit.")
@pass_env
def backfill_plan(env: Env, path: Path, reason: str) -> None:
    """Record a backfill plan from FILE; nothing else is written.

    FILE is JSON: {"user", "device", "from", "to", "buckets": [{bucket_start, source, model,
    input_tokens, cached_input_tokens, output_tokens, reasoning_output_tokens,
    total_tokens, cache_write_tokens}], "zero_missing": false}. The range is [from, to),
    RFC 3339 instants on half-hours, at most 93 days. With "zero_missing": true every
    existing bucket of the device in the range that is not listed is set to zero.

    \b
    Example:
      usageledger backfill plan --file fix.json --reason "gemini tool tokens were dropped"
    """
    settings = env.settings
    database_ = database(env)
    spec = run(
        lambda: parse_plan_file(
            path.read_bytes(),
            registry=SourceRegistry(settings.extra_source_names),
            max_model_length=settings.max_model_length,
        )
    )
    with job_log(env) as logger:
        result = run(
            lambda: backfill_ops.create_plan(
                database_, spec, reason=reason, now_ms=now_ms(), evidence=logger
            )
        )
    click.echo(result.plan_id)
    click.echo(
        f"planned {result.affected_keys} bucket change(s); review with "
        f"`usageledger plans show {result.plan_id}`, then "
        f"`usageledger backfill apply {result.plan_id}`",
        err=True,
    )


def _run_plan(
    env: Env, step: Callable[..., backfill_ops.PlanResult], plan_id: str
) -> backfill_ops.PlanResult:
    """Run ``step`` (apply or roll back) on plan ``plan_id`` with the job's evidence log."""
    database_ = database(env)
    with job_log(env) as logger:
        return run(lambda: step(database_, plan_id, now_ms=now_ms(), evidence=logger))


@backfill.command("apply")
@click.argument("plan_id")
@pass_env
def backfill_apply(env: Env, plan_id: str) -> None:
    """Apply plan PLAN_ID once, unless its range changed since it was planned.

    \b
    Example:
      usageledger backfill apply 0b6f2c1e-…
    """
    result = _run_plan(env, backfill_ops.apply_plan, plan_id)
    click.echo(
        f"applied plan {plan_id}: {result.written} new revision(s) for "
        f"{result.affected_keys} bucket(s); undo with `usageledger backfill rollback {plan_id}`"
    )


@backfill.command("rollback")
@click.argument("plan_id")
@pass_env
def backfill_rollback(env: Env, plan_id: str) -> None:
    """Restore what plan PLAN_ID replaced, unless its range changed since it was applied.

    \b
    Example:
      usageledger backfill rollback 0b6f2c1e-…
    """
    result = _run_plan(env, backfill_ops.rollback_plan, plan_id)
    click.echo(
        f"rolled back plan {plan_id}: {result.written} new revision(s) restore "
        f"{result.affected_keys} bucket(s)"
    )


def _when(ms: int | None) -> str:
    return "" if ms is None else datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M")


@click.group("plans")
def plans() -> None:
    """List and show backfill plans.

    \b
    Example:
      usageledger plans list --user alice
    """


@plans.command("list")
@click.option("--user", "user_name", default=None, help="Only this user's plans.")
@pass_env
def plans_list(env: Env, user_name: str | None) -> None:
    """List plans, newest first: id, user, device, state, range, buckets, times, reason.

    \b
    Example:
      usageledger plans list
    """
    rows = run(lambda: database(env).read(lambda c: backfill_ops.list_plans(c, user_name)))
    # Plain lines: the id is copied into `backfill apply`, a table would wrap it.
    click.echo("plan\tstate\tuser\tdevice\trange (UTC)\tbuckets\tcreated (UTC)\treason")
    for row in rows:
        click.echo(
            f"{row['plan_id']}\t{row['state']}\t{row['user']}\t{row['device']}\t"
            f"{_when(row['range_start'] * 1000)} → {_when(row['range_end'] * 1000)}\t"
            f"{row['affected_keys']}\t{_when(row['created_at_ms'])}\t{row['reason']}"
        )


def _counts(values: dict[str, int] | None) -> str:
    if values is None:
        return "absent"
    return "/".join(str(values[name]) for name in COUNT_COLUMNS)


@plans.command("show")
@click.argument("plan_id")
@pass_env
def plans_show(env: Env, plan_id: str) -> None:
    """Show plan PLAN_ID: scope, state, checksums and every bucket change (before → after).

    \b
    Example:
      usageledger plans show 0b6f2c1e-…
    """
    plan = run(lambda: database(env).read(lambda c: backfill_ops.get_plan(c, plan_id)))
    fields = [
        ("plan", plan["plan_id"]),
        ("user", plan["user"]),
        ("device", plan["device"]),
        ("state", plan["state"]),
        ("reason", plan["reason"]),
        ("range", f"{iso_utc(plan['range_start'])} → {iso_utc(plan['range_end'])} (UTC)"),
        ("zero_missing", str(bool(plan["changes"].get("zero_missing")))),
        ("buckets", str(plan["affected_keys"])),
        ("checksum before", plan["checksum_before"]),
        ("checksum expected after", plan["checksum_expected_after"]),
        ("checksum after", plan["checksum_after"] or ""),
        ("created", _when(plan["created_at_ms"])),
        ("applied", _when(plan["applied_at_ms"])),
        ("rolled back", _when(plan["rolled_back_at_ms"])),
    ]
    for name, value in fields:
        click.echo(f"{name + ':':<25}{value}")
    before = {
        (e["source"], e["model"], e["bucket_start"]): e["counts"]
        for e in (plan["snapshot"] or {}).get("buckets", [])
    }
    click.echo(f"changes (counts are {'/'.join(COUNT_COLUMNS)}):")
    for entry in plan["changes"]["buckets"]:
        key = (entry["source"], entry["model"], entry["bucket_start"])
        was = _counts(before[key]) if key in before else "(not applied)"
        click.echo(
            f"  {iso_utc(entry['bucket_start'])}\t{entry['source']}\t{entry['model']}\t"
            f"before: {was}\tafter: {_counts(entry['counts'])}"
        )


@click.group("retention")
def retention() -> None:
    """Delete data the ledger no longer needs (receipts, superseded revisions).

    \b
    Example:
      usageledger retention run --dry-run
    """


@retention.command("run")
@click.option("--dry-run", is_flag=True, help="Count what would be deleted; delete nothing.")
@click.option(
    "--receipts-days",
    type=click.IntRange(min=1),
    default=DEFAULT_RECEIPTS_DAYS,
    show_default=True,
    help="Delete ingest receipts older than this.",
)
@click.option(
    "--revisions-days",
    type=click.IntRange(min=1),
    default=DEFAULT_REVISIONS_DAYS,
    show_default=True,
    help="Delete superseded bucket revisions received longer ago than this.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(1, 50_000),
    default=5_000,
    show_default=True,
    help="Rows deleted per transaction.",
)
@pass_env
def retention_run(
    env: Env, dry_run: bool, receipts_days: int, revisions_days: int, batch_size: int
) -> None:
    """Delete old ingest receipts and old superseded revisions, in bounded batches.

    A current revision (the value a bucket holds) is never deleted, so `usageledger replay`
    rebuilds the same facts afterwards. Run it daily.

    \b
    Examples:
      usageledger retention run --dry-run
      usageledger retention run --receipts-days 30 --revisions-days 90
    """
    database_ = database(env)
    with job_log(env) as logger, progress("user") as bar:
        report = run(
            lambda: run_retention(
                database_,
                now_ms=now_ms(),
                receipts_days=receipts_days,
                revisions_days=revisions_days,
                batch_size=batch_size,
                dry_run=dry_run,
                evidence=logger,
                progress=bar,
            )
        )
    verb = "would delete" if dry_run else "deleted"
    click.echo(
        f"ingest_receipts: {verb} {report.receipts} (created before "
        f"{_when(report.receipts_before_ms)} UTC)"
    )
    click.echo(
        f"bucket_revisions: {verb} {report.revisions} superseded (received before "
        f"{_when(report.revisions_before_ms)} UTC)"
    )


#: Registered by :data:`usageledger.cli.root.COMMANDS`.
commands = [replay, verify, backfill, plans, retention]
