"""``db copy``: copy a whole ledger to another database and prove the copy equal.

The target is checked first (every ledger table absent or empty, else refused), migrated to
the newest schema, then filled table by table in foreign-key order, in batches, inside one
transaction (a failed copy leaves it empty). The source is read in one read-only snapshot,
so a server still writing to it cannot produce a torn copy (writes after the snapshot are
simply not in it: stop the server for a move). Every source row also goes into a
:class:`~usageledger.ops.checksums.TableDigest`; after the commit the target is read back and
each table's row count and digest must match.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Connection, Engine, func, insert, inspect, literal, select, text
from sqlalchemy.engine import make_url

from usageledger.errors import ErrorCode, LedgerError, ValidationFailed
from usageledger.evidence import EvidenceLogger
from usageledger.ops.checksums import TableDigest, table_digest
from usageledger.ops.jobs import NoProgress, Progress, Stages
from usageledger.store.dialect import is_sqlite
from usageledger.store.migrate import current_revision, head_revision, upgrade
from usageledger.store.tables import metadata

DEFAULT_BATCH = 5_000


class CopyRefused(LedgerError):
    """The copy cannot start (same database, old source schema, non-empty target)."""

    status = 409
    code = ErrorCode.VALIDATION_FAILED


@dataclass(frozen=True, slots=True)
class TableCopy:
    """One table's row counts and digests on both sides."""

    name: str
    rows: int
    checksum: str
    target_rows: int
    target_checksum: str

    @property
    def ok(self) -> bool:
        """True when the target holds the same rows."""
        return (self.rows, self.checksum) == (self.target_rows, self.target_checksum)


@dataclass(slots=True)
class CopyReport:
    """Every table copied, in the order copied."""

    tables: list[TableCopy] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every table matches."""
        return all(t.ok for t in self.tables)


def database_url(url: str) -> str:
    """A SQLAlchemy URL for ``sqlite:///…`` or ``postgresql://…`` (psycopg 3)."""
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url[len("postgresql://") :]
    if url.startswith(("sqlite://", "postgresql+psycopg://")):
        return url
    raise ValidationFailed("the target must be a sqlite:///path or postgresql://… URL")


def _same_database(a: Engine, b: Engine) -> bool:
    ua, ub = make_url(str(a.url)), make_url(str(b.url))
    if ua.get_backend_name() != ub.get_backend_name():
        return False
    if ua.get_backend_name() == "sqlite":
        return bool(ua.database) and ua.database == ub.database
    return (ua.host, ua.port, ua.database) == (ub.host, ub.port, ub.database)


def _non_empty(target: Engine) -> list[str]:
    present = set(inspect(target).get_table_names())
    with target.connect() as conn:
        return [
            t.name
            for t in metadata.sorted_tables
            if t.name in present
            and conn.execute(select(literal(1)).select_from(t).limit(1)).first() is not None
        ]


def prepare_target(source: Engine, target: Engine) -> None:
    """Refuse an unsafe copy; migrate the (empty) target to the newest schema."""
    if _same_database(source, target):
        raise CopyRefused("the target is the configured database itself")
    if current_revision(source) != head_revision():
        raise CopyRefused(
            "the source database is not at the newest schema; run `usageledger db upgrade` first"
        )
    full = _non_empty(target)
    if full:
        raise CopyRefused(
            f"the target is not empty ({', '.join(full)} have rows); copy into a new, empty "
            "database"
        )
    upgrade(target)


def copy_database(
    source: Engine,
    target: Engine,
    *,
    batch_size: int = DEFAULT_BATCH,
    evidence: EvidenceLogger | None = None,
    progress: Progress | None = None,
) -> CopyReport:
    """Copy every ledger table from ``source`` to an empty ``target`` and verify it."""
    if not 1 <= batch_size <= 50_000:
        raise ValidationFailed("the batch size must be 1-50000 rows")
    progress = progress or NoProgress()
    stages = Stages(evidence, "db_copy")
    with stages.stage("prepare"):
        prepare_target(source, target)
    with stages.stage("copy") as run:
        digests = _copy(source, target, batch_size, progress)
        run.extra.update(tables=len(digests), rows=sum(d.rows for d in digests))
    with stages.stage("verify") as run:
        report = CopyReport()
        with target.connect() as conn:
            for digest in digests:
                got = table_digest(conn, metadata.tables[digest.name], batch_size)
                report.tables.append(
                    TableCopy(
                        digest.name, digest.rows, digest.hexdigest(), got.rows, got.hexdigest()
                    )
                )
        run.extra["mismatches"] = sum(not t.ok for t in report.tables)
        if not report.ok:
            run.status, run.error_code = 500, str(ErrorCode.INTERNAL_ERROR)
    return report


def _copy(source: Engine, target: Engine, batch_size: int, progress: Progress) -> list[TableDigest]:
    digests: list[TableDigest] = []
    # One read-only snapshot of the source (SERIALIZABLE READ ONLY DEFERRABLE on PostgreSQL,
    # a read transaction on SQLite's WAL), one transaction on the target.
    with source.connect() as raw:
        src = raw.execution_options(
            isolation_level="SERIALIZABLE", postgresql_readonly=True, postgresql_deferrable=True
        )
        with src.begin(), target.begin() as dst:
            for table in metadata.sorted_tables:
                total = int(src.execute(select(func.count()).select_from(table)).scalar_one())
                progress.user_started(table.name, max(1, -(-total // batch_size)))
                digest = TableDigest(table.name)
                ordered = select(table).order_by(*table.primary_key.columns)
                result = src.execution_options(stream_results=True, yield_per=batch_size).execute(
                    ordered
                )
                for rows in result.partitions():
                    dst.execute(insert(table), [dict(row._mapping) for row in rows])
                    digest.add_all(rows)
                    progress.advance()
                digests.append(digest)
            advance_sequences(dst)
    return digests


def advance_sequences(conn: Connection) -> None:
    """Move PostgreSQL id sequences past the copied ids (SQLite needs nothing).

    Copied rows carry their ids, which a sequence does not see; without this the next
    ``users create`` on the target would collide with a copied user.
    """
    if is_sqlite(conn):
        return
    for table in metadata.sorted_tables:
        column = table.autoincrement_column
        if column is None:
            continue
        conn.execute(
            text(
                f"SELECT setval(pg_get_serial_sequence('{table.name}', '{column.name}'), "
                f'(SELECT COALESCE(MAX("{column.name}"), 0) + 1 FROM "{table.name}"), false)'
            )
        )
