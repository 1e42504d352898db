"""Crash audit at full size: at least 20 SIGKILLs per database under concurrent uploads.

Runs ``scripts/crash_audit.py`` (see its docstring for every check) against SQLite (1 worker)
and PostgreSQL (2 workers) with 8 devices of 3 users sending batches of up to 500 buckets,
and records the results under "## Crash audit" in docs/benchmarks.md.
Run: ``python -m bench.crash [--kills 20] [--quick]``.
"""

from __future__ import annotations

import argparse
import sys

from scripts.crash_audit import Options, Tally, exit_on_sigterm, run

from bench.common import write_section


def row(t: Tally, workers: int) -> str:
    """One line of the results table."""
    verify = "n/a" if t.verify_drifts is None else str(t.verify_drifts)
    return (
        f"| {t.database} | {workers} | {t.kills} | {t.batches:,} | {t.acknowledged:,} "
        f"({t.buckets_acknowledged:,} buckets) | {t.unacknowledged} | {t.retries:,} | "
        f"{t.replayed} | {t.in_flight_409} | {t.server_errors} | **{t.lost}** | "
        f"**{t.duplicated}** | **{t.partial}** | {t.wrong} | {t.integrity} | "
        f"{t.rollup_mismatches} | {verify} | {t.receipts_bad} | {t.seconds:.0f} s |"
    )


def main(argv: list[str] | None = None) -> int:
    """Run the full-size audit on both databases and record it; 1 if any check failed."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kills", type=int, default=20, help="SIGKILLs per database")
    parser.add_argument("--devices", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--quick", action="store_true", help="5 kills, no docs update")
    args = parser.parse_args(argv)
    options = Options(
        kills=5 if args.quick else args.kills,
        devices=args.devices,
        users=3,
        batch_size=args.batch_size,
        keys=2000,
        deadline_s=1800,
    )
    with exit_on_sigterm():
        results = run(["sqlite", "postgresql"], options)
    header = [
        "| database | workers | kills | batches | acknowledged | unacknowledged | retries "
        "| replayed | 409 in flight | 5xx | lost | duplicated | partial | wrong | integrity "
        "| rollup mismatches | verify drifts | bad receipts | time |",
        "|---" * 19 + "|",
    ]
    workers = {"sqlite": options.sqlite_workers, "postgresql": options.postgres_workers}
    table = header + [row(t, workers[t.database]) for t in results]
    print("\n".join(table))
    if not args.quick:
        command = "python -m bench.crash"
        if args.kills != 20 or args.devices != 8 or args.batch_size != 500:
            command += f" --kills {args.kills} --devices {args.devices}"
            command += f" --batch-size {args.batch_size}"
        verdict = "every check held" if all(t.ok for t in results) else "**a check FAILED**"
        write_section(
            "Crash audit",
            f"Command: `{command}` ({verdict}). A real `usageledger serve` on loopback takes "
            f"uploads from {options.devices} concurrent clients (one thread per device, "
            f"{options.users} users, batches of 1–{options.batch_size} buckets over "
            f"{options.keys:,} keys per device, 70 % with an Idempotency-Key) and is killed "
            "with SIGKILL (its whole process group) at a random moment 0.2–1.5 s after it "
            "answers /healthz, then restarted; clients retry every unacknowledged batch with "
            "the same body and key until it is acknowledged. After every kill, with the server "
            "down, the database is read directly: every bucket of every acknowledged batch at "
            "≥ its revision (*lost* counts those that are not), the in-flight batch of each "
            "device applied to all or none of its buckets (*partial*), every stored value the "
            "one its revision's batch sent (*wrong*), `PRAGMA integrity_check`, and "
            "`usage_daily` equal to the sums of `usage_buckets` by local day. At the end also: "
            "no two `bucket_revisions` rows for one key and revision and no row from a batch "
            "that never carried that key (*duplicated*), one completed receipt per "
            "acknowledged Idempotency-Key, and `ops.verify` (rebuild and compare). *replayed* "
            "counts retries answered from a stored receipt (the kill came after the commit); "
            "*409 in flight* counts retries answered 409 because their Idempotency-Key was "
            "still being applied (an upload's key is claimed in the server's memory and "
            "written with the batch in one transaction, so a killed request leaves no claim "
            "behind). "
            "The machine was shared with other jobs, so times are indicative only.\n\n"
            + "\n".join(table),
        )
    return 0 if all(t.ok for t in results) else 1


if __name__ == "__main__":
    sys.exit(main())
