"""The migration linter: every Alembic revision must be additive (docs/design.md §7).

Each revision is rendered to PostgreSQL SQL offline, on its own (``prev:rev``), and checked
twice: by our own statement rules (:func:`check_sql`: drops, renames, type changes, new
required columns, data rewrites) and by squawk (:func:`run_squawk`, with the rules in
:data:`SQUAWK_EXCLUDED` switched off for the reasons written there).

A planned breaking change has one escape hatch: a replay plan next to the migration,
``versions/0007_xyz.replay-plan.md`` beside ``versions/0007_xyz.py``, with the headings
``Scope``, ``Replay``, ``Rollback`` and ``Verify``, each with content. With a complete plan the
revision's findings are reported as waived instead of failing. See docs/schema-evolution.md.

One more check judges the tree as a whole: the schema at head (migrated into a scratch SQLite
file and reflected) must fit the declared Citus placement of store/tables.py
(:func:`usageledger.store.placement.check_placement`: every table distributed by ``user_id`` or
a reference table, every key of a distributed table holding ``user_id``, no foreign key that
Citus refuses). Its findings are ``placement:<rule>``; no replay plan waives them.

Run it with ``python -m scripts.migration_lint`` (exit status 1 on a finding); the tests in
``tests/store/test_migration_lint.py`` run it on every ``make test``. It is a development tool
(it needs ``squawk-cli`` from the ``dev`` extra), so it lives here and not in the package.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import Script, ScriptDirectory

from usageledger.store.migrate import MIGRATIONS, alembic_config
from usageledger.store.placement import DECLARED, Placement, check_placement, schema_at

#: Offline rendering needs only a dialect, never a server.
RENDER_URL = "postgresql+psycopg://"
PLAN_SUFFIX = ".replay-plan.md"
PLAN_HEADINGS: tuple[str, ...] = ("Scope", "Replay", "Rollback", "Verify")
#: The oldest PostgreSQL we expect to run on (squawk's advice depends on it; CI runs 15).
SQUAWK_PG_VERSION = "14"
#: squawk rules that do not fit this project, each with the reason (docs/schema-evolution.md).
SQUAWK_EXCLUDED: dict[str, str] = {
    "prefer-text-field": "VARCHAR(n) is a deliberate bound both dialects enforce (a source "
    "name is String(32), like the registry's name rule); widening one later is a type "
    "change, which our change-column-type rule flags",
    "prefer-bigint-over-int": "INTEGER holds only small bounded numbers (bucket_count, rank, "
    "problems); every count and id that grows is BIGINT (tests/store/test_migrations.py)",
    "prefer-identity": "SQLAlchemy renders an autoincrementing BigInteger as BIGSERIAL on "
    "PostgreSQL and INTEGER PRIMARY KEY on SQLite; moving to IDENTITY would alter "
    "existing tables for nothing",
    "require-lock-timeout": "migrations run on an engine from store.engine.make_engine, which "
    "sets lock_timeout on every PostgreSQL connection, not with SET lines in each file",
    "require-statement-timeout": "make_engine sets statement_timeout on every PostgreSQL "
    "connection (USAGELEDGER_STATEMENT_TIMEOUT_MS)",
    "require-concurrent-index-creation": "store.migrate.upgrade runs the revisions in one "
    "transaction, where CREATE INDEX CONCURRENTLY cannot run; a new index is additive",
}
#: Alembic's own bookkeeping; writing to it is not a data rewrite.
BOOKKEEPING_TABLES = frozenset({"alembic_version"})

#: Our rules: name → why the change is not additive.
RULES: dict[str, str] = {
    "drop-table": "drops a table that old code reads and writes",
    "drop-index": "drops an index that a query relies on",
    "drop-object": "drops a database object that old code may use",
    "drop-column": "drops a column that old code and old clients read",
    "drop-constraint": "drops a constraint (a key, a uniqueness or a check) that a query or "
    "an upsert relies on",
    "rename-table": "renames a table; old code still uses the old name",
    "rename-column": "renames a column; old code still uses the old name",
    "rename-constraint": "renames a constraint; ON CONFLICT and reviewers use the old name",
    "rename-index": "renames an index; the schema no longer matches the table metadata",
    "rename-object": "renames a database object that old code may use",
    "replace-object": "replaces the definition of an existing object in place",
    "change-column-type": "changes a column's type, which rewrites the table and changes what "
    "old readers get",
    "add-required-column": "adds a NOT NULL column without a DEFAULT: every writer that does not "
    "know it fails, and so does the migration on a non-empty table",
    "set-not-null": "makes an existing column required: writers that leave it empty fail",
    "drop-not-null": "lets an existing column be NULL: readers that rely on a value break",
    "drop-default": "removes a default that old writers rely on when they omit the column",
    "rewrite-data": "rewrites or deletes rows: a data rewrite needs a replay plan (stop rule)",
}

_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
    | (?P<comment>--[^\n]*|/\*.*?\*/)
    | (?P<string>[EeBbXxNn]?'(?:[^']|'')*'|\$(?P<tag>[A-Za-z_]*)\$.*?\$(?P=tag)\$)
    | (?P<quoted>"(?:[^"]|"")*")
    | (?P<word>[A-Za-z_][A-Za-z0-9_$]*)
    | (?P<number>\d+(?:\.\d*)?)
    | (?P<punct>.)
    """,
    re.VERBOSE | re.DOTALL,
)
_HEADING = re.compile(r"^ {0,3}#{1,6}\s+(?P<text>.+?)\s*#*\s*$")


class LintError(Exception):
    """The linter could not run (squawk missing, a revision that cannot be rendered)."""


@dataclass(frozen=True, slots=True)
class Token:
    """One SQL token: ``word`` (a keyword or bare name), ``name`` (quoted), or another kind."""

    kind: str
    text: str

    @property
    def keyword(self) -> str | None:
        """The upper-cased word, or None for anything else (quoted names are never keywords)."""
        return self.text.upper() if self.kind == "word" else None


@dataclass(frozen=True, slots=True)
class Finding:
    """One non-additive change: the rule (ours, or ``squawk:<rule>``), why, and where."""

    rule: str
    message: str
    statement: str

    def __str__(self) -> str:
        return f"{self.rule}: {self.message}\n      {self.statement}"


def tokenize(sql: str) -> list[Token]:
    """The tokens of ``sql`` without spaces and comments; string contents are opaque."""
    tokens: list[Token] = []
    for match in _TOKEN.finditer(sql):
        kind = match.lastgroup
        if kind in ("space", "comment") or kind is None:
            continue
        text = match.group(kind)
        if kind == "quoted":
            kind, text = "name", text[1:-1].replace('""', '"')
        tokens.append(Token(kind, text))
    return tokens


def statements(sql: str) -> list[list[Token]]:
    """``sql`` split into statements (at semicolons outside strings and comments)."""
    out: list[list[Token]] = [[]]
    for token in tokenize(sql):
        if token.kind == "punct" and token.text == ";":
            out.append([])
        else:
            out[-1].append(token)
    return [s for s in out if s]


def _text(tokens: Sequence[Token]) -> str:
    shown = " ".join(t.text if t.kind != "name" else f'"{t.text}"' for t in tokens)
    shown = re.sub(r" ([,)])", r"\1", shown).replace("( ", "(")
    shown = re.sub(r"(\w) \(", r"\1(", shown)
    return shown if len(shown) <= 240 else shown[:237] + "..."


def _words(tokens: Sequence[Token]) -> list[str]:
    return [t.keyword or "" for t in tokens]


def _split_top_level(tokens: Sequence[Token]) -> list[list[Token]]:
    """Split at commas outside parentheses (the actions of one ALTER TABLE)."""
    parts: list[list[Token]] = [[]]
    depth = 0
    for token in tokens:
        if token.kind == "punct" and token.text == "(":
            depth += 1
        elif token.kind == "punct" and token.text == ")":
            depth -= 1
        if depth == 0 and token.kind == "punct" and token.text == ",":
            parts.append([])
        else:
            parts[-1].append(token)
    return [p for p in parts if p]


def _skip_name(tokens: Sequence[Token], at: int) -> int:
    """The index after a possibly schema-qualified name starting at ``at``."""
    at += 1
    while at + 1 < len(tokens) and tokens[at].text == "." and tokens[at].kind == "punct":
        at += 2
    return at


def _target(tokens: Sequence[Token], at: int) -> str:
    """The (last part of the) name starting at ``at``."""
    end = _skip_name(tokens, at)
    return tokens[end - 1].text if 0 < end <= len(tokens) else ""


def _alter_table_action(action: Sequence[Token]) -> str | None:
    words = _words(action)
    first = words[0]
    second = words[1] if len(words) > 1 else ""
    if first == "RENAME":
        return {"TO": "rename-table", "CONSTRAINT": "rename-constraint"}.get(
            second, "rename-column"
        )
    if first == "DROP":
        return "drop-constraint" if second == "CONSTRAINT" else "drop-column"
    if first == "ALTER":
        rest = words[2:] if second == "COLUMN" else words[1:]
        tail = " ".join(rest[1:])
        if tail.startswith(("TYPE", "SET DATA TYPE")):
            return "change-column-type"
        for phrase, rule in (
            ("SET NOT NULL", "set-not-null"),
            ("DROP NOT NULL", "drop-not-null"),
            ("DROP DEFAULT", "drop-default"),
        ):
            if tail.startswith(phrase):
                return rule
        return None
    if first == "ADD" and second not in (
        "CONSTRAINT",
        "PRIMARY",
        "UNIQUE",
        "CHECK",
        "FOREIGN",
        "EXCLUDE",
    ):
        depth = 0
        top: list[str] = []
        for token in action:
            if token.text == "(" and token.kind == "punct":
                depth += 1
            elif token.text == ")" and token.kind == "punct":
                depth -= 1
            elif depth == 0:
                top.append(token.keyword or "")
        joined = " ".join(top)
        required = " NOT NULL" in f" {joined}" or " PRIMARY KEY" in f" {joined}"
        if required and "DEFAULT" not in top and "GENERATED" not in top:
            return "add-required-column"
    return None


def _check_alter_table(tokens: Sequence[Token]) -> list[str]:
    at = 2
    words = _words(tokens)
    if words[at : at + 2] == ["IF", "EXISTS"]:
        at += 2
    if at < len(words) and words[at] == "ONLY":
        at += 1
    at = _skip_name(tokens, at)
    if at < len(tokens) and tokens[at].text == "*":
        at += 1
    rules = [_alter_table_action(a) for a in _split_top_level(tokens[at:])]
    return [r for r in rules if r is not None]


def check_statement(tokens: Sequence[Token]) -> list[str]:
    """The names of our rules that one statement breaks (empty when it is additive)."""
    words = _words(tokens)
    first = words[0]
    second = words[1] if len(words) > 1 else ""
    if first == "DROP":
        return [{"TABLE": "drop-table", "INDEX": "drop-index"}.get(second, "drop-object")]
    if first == "ALTER" and second == "TABLE":
        return _check_alter_table(tokens)
    if first == "ALTER":
        if "RENAME" in words:
            return ["rename-index" if second == "INDEX" else "rename-object"]
        if "DROP" in words:
            return ["drop-object"]
        return []
    if first == "CREATE" and words[1:3] == ["OR", "REPLACE"]:
        return ["replace-object"]
    if first == "TRUNCATE" or first == "MERGE":
        return ["rewrite-data"]
    if first == "UPDATE" or (first == "DELETE" and second == "FROM"):
        at = 1 if first == "UPDATE" else 2
        if at < len(words) and words[at] == "ONLY":
            at += 1
        if _target(tokens, at).lower() in BOOKKEEPING_TABLES:
            return []
        return ["rewrite-data"]
    if first == "WITH" and {"UPDATE", "DELETE", "TRUNCATE"} & set(words):
        return ["rewrite-data"]
    return []


def check_sql(sql: str) -> list[Finding]:
    """Our own rules over rendered SQL: one finding per non-additive change."""
    findings: list[Finding] = []
    for tokens in statements(sql):
        for rule in check_statement(tokens):
            findings.append(Finding(rule, RULES[rule], _text(tokens)))
    return findings


def squawk_binary() -> str:
    """The squawk executable (``squawk-cli`` from PyPI, a dev dependency)."""
    beside = Path(sys.executable).parent / "squawk"  # the pinned one of this environment
    found = str(beside) if beside.exists() else shutil.which("squawk")
    if found is None:
        raise LintError("squawk is not installed: pip install squawk-cli (a dev dependency)")
    return found


def run_squawk(sql: str, *, name: str = "migration") -> list[Finding]:
    """squawk's findings over rendered SQL, minus :data:`SQUAWK_EXCLUDED`."""
    with tempfile.TemporaryDirectory(prefix="usageledger-squawk-") as tmp:
        path = Path(tmp) / f"{name}.sql"
        path.write_text(sql, encoding="utf-8")
        config = Path(tmp) / "squawk.toml"  # empty: no stray .squawk.toml changes the rules
        config.write_text("", encoding="utf-8")
        done = subprocess.run(
            [
                squawk_binary(),
                f"--config={config}",
                "--reporter=json",
                f"--pg-version={SQUAWK_PG_VERSION}",
                f"--exclude={','.join(SQUAWK_EXCLUDED)}",
                str(path),
            ],
            capture_output=True,
            text=True,
            check=False,
            cwd=tmp,
            timeout=120,
        )
    if done.returncode not in (0, 1):
        raise LintError(f"squawk failed (exit {done.returncode}): {done.stderr.strip()}")
    lines = sql.splitlines()
    findings = []
    for item in json.loads(done.stdout or "[]"):
        line = int(item.get("line", 0))  # zero-based
        where = lines[line].strip() if 0 <= line < len(lines) else ""
        findings.append(
            Finding(
                f"squawk:{item['rule_name']}", str(item["message"]), f"line {line + 1}: {where}"
            )
        )
    return findings


def plan_path(migration: Path) -> Path:
    """The replay plan beside a migration: ``0007_xyz.py`` → ``0007_xyz.replay-plan.md``."""
    return migration.with_name(migration.stem + PLAN_SUFFIX)


def plan_problems(path: Path) -> list[str]:
    """What a replay plan lacks: each heading of :data:`PLAN_HEADINGS`, with some text under it."""
    sections: dict[str, int] = {}
    current: str | None = None
    for line in path.read_text(encoding="utf-8").splitlines():
        heading = _HEADING.match(line)
        if heading:
            current = heading.group("text").rstrip(":").strip().casefold()
            sections.setdefault(current, 0)
        elif current is not None and line.strip():
            sections[current] += 1
    problems = []
    for name in PLAN_HEADINGS:
        lines = sections.get(name.casefold())
        if lines is None:
            problems.append(f"{path.name}: missing the heading '## {name}'")
        elif lines == 0:
            problems.append(f"{path.name}: nothing under the heading '{name}'")
    return problems


@dataclass
class RevisionReport:
    """The lint result of one revision."""

    revision: str
    path: Path
    sql: str
    findings: list[Finding] = field(default_factory=list)
    plan: Path | None = None
    plan_problems: list[str] = field(default_factory=list)

    @property
    def waived(self) -> bool:
        """True when findings exist and a complete replay plan accepts them."""
        return bool(self.findings) and self.plan is not None and not self.plan_problems

    @property
    def ok(self) -> bool:
        """True when the revision is additive, or its breaking change has a complete plan."""
        return not self.findings or self.waived

    def describe(self) -> str:
        """A few lines for a human: the findings, and what the plan lacks."""
        state = (
            "ok" if not self.findings else ("WAIVED by a replay plan" if self.waived else "FAIL")
        )
        lines = [f"{self.revision} ({self.path.name}): {state}"]
        lines += [f"  - {f}" for f in self.findings]
        if self.findings and not self.waived:
            lines.append(
                f"  A planned breaking change needs {plan_path(self.path).name} with the "
                f"headings {', '.join(PLAN_HEADINGS)} (docs/schema-evolution.md)."
            )
            lines += [f"  - {p}" for p in self.plan_problems]
        return "\n".join(lines)


@dataclass
class LintReport:
    """The lint result of a migration tree, base first."""

    revisions: list[RevisionReport]
    #: The schema at head against the declared placement (empty when it fits, or not run).
    placement: list[Finding] = field(default_factory=list)
    placement_checked: bool = False

    @property
    def ok(self) -> bool:
        """True when every revision is ok and the schema at head fits the placement."""
        return all(r.ok for r in self.revisions) and not self.placement

    def __getitem__(self, revision: str) -> RevisionReport:
        return next(r for r in self.revisions if r.revision == revision)

    def describe(self) -> str:
        """The report of every revision, then of the placement."""
        lines = [r.describe() for r in self.revisions]
        if self.placement_checked:
            state = "FAIL" if self.placement else "ok"
            lines.append(f"placement (schema at head, store/tables.py): {state}")
            lines += [f"  - {f}" for f in self.placement]
        return "\n".join(lines)


def render_config(*extra_version_dirs: Path) -> Config:
    """An Alembic config that renders PostgreSQL SQL, with more version directories if given."""
    config = alembic_config(RENDER_URL)
    if extra_version_dirs:
        dirs = [MIGRATIONS / "versions", *extra_version_dirs]
        config.set_main_option("path_separator", "newline")
        config.set_main_option("version_locations", "\n".join(str(d) for d in dirs))
    return config


def _scripts(config: Config) -> Iterator[Script]:
    yield from reversed(list(ScriptDirectory.from_config(config).walk_revisions()))


def render_revision(config: Config, script: Script) -> str:
    """The PostgreSQL SQL of one revision alone (``prev:rev``), rendered offline."""
    down = script.down_revision
    if isinstance(down, tuple | list):
        raise LintError(f"{script.revision} merges {down}; keep the migration tree linear")
    buffer = io.StringIO()
    previous = config.output_buffer
    config.output_buffer = buffer
    try:
        command.upgrade(config, f"{down or 'base'}:{script.revision}", sql=True)
    except Exception as exc:  # a migration that reads data in Python cannot render offline
        raise LintError(f"{script.revision} cannot be rendered offline: {exc}") from exc
    finally:
        config.output_buffer = previous
    return buffer.getvalue()


def lint_revision(config: Config, script: Script, *, squawk: bool = True) -> RevisionReport:
    """Render one revision and check it with our rules, squawk, and its replay plan."""
    sql = render_revision(config, script)
    path = Path(script.path)
    findings = check_sql(sql)
    if squawk:
        findings += run_squawk(sql, name=path.stem)
    plan = plan_path(path)
    report = RevisionReport(script.revision, path, sql, findings)
    if plan.exists():
        report.plan = plan
        report.plan_problems = plan_problems(plan)
    return report


def placement_findings(revision: str = "head", placement: Placement = DECLARED) -> list[Finding]:
    """The placement rules over the packaged tree's schema at ``revision``, as findings."""
    return [
        Finding(f"placement:{p.rule}", p.message, p.table)
        for p in check_placement(schema_at(revision), placement)
    ]


def lint_migrations(
    config: Config | None = None, *, squawk: bool = True, placement: Placement = DECLARED
) -> LintReport:
    """Lint every revision of the tree (the packaged one by default), base first.

    The placement check runs on the packaged tree only: a synthetic tree of a test lives in
    version directories that an online upgrade of a scratch database does not see.
    """
    packaged = config is None
    config = config or render_config()
    report = LintReport([lint_revision(config, s, squawk=squawk) for s in _scripts(config)])
    if packaged:
        report.placement = placement_findings(placement=placement)
        report.placement_checked = True
    return report


def main() -> int:
    """Lint the packaged migrations; print the report; 1 when a revision fails."""
    report = lint_migrations()
    print(report.describe())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
