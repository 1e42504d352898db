"""Evidence-first incident attribution over structured log lines in the M1 format.

The attribution rules of docs/design.md §6 (docs/attribution.md) as plain functions::

    read_lines   bytes -> EvidenceLine | SkipReason   (never raises on bad input)
    classify     EvidenceLine -> Attribution          (first matching rule wins)
    analyze      lines -> Analysis                    (time/function filters, one verdict each)
    report       Analysis -> dict                     (coverage, verdicts, functions, incidents)

Lenient on types (a status may be ``500`` or ``"500"``), strict on evidence: a line without
``upstream_status`` is ``unknown`` whatever else it says. ``docs/attribution.md`` has the rules.
"""

from __future__ import annotations

import math
import re
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from types import MappingProxyType
from typing import IO, Any, Final

import orjson

REQUIRED_FIELDS: Final = (
    "request_id",
    "function",
    "stage",
    "status",
    "latency_ms",
    "error_code",
    "upstream_status",
    "upstream_latency_ms",
)
#: Fields a line "carries" even when null (services log them as null when there is nothing to say).
NULLABLE_FIELDS: Final = frozenset({"error_code", "upstream_status", "upstream_latency_ms"})
#: Where a line's timestamp is looked for, first found wins.
TIME_FIELDS: Final = ("ts", "time", "timestamp")

DEFAULT_SLOW_MS: Final = 1000.0
#: A slow line is an application bottleneck only while upstream time is below this share of it.
SMALL_UPSTREAM_SHARE: Final = 0.2
#: Non-ok lines further apart than this (seconds) belong to different incidents.
DEFAULT_INCIDENT_GAP_S: Final = 60.0
MAX_LINE_BYTES: Final = 1024 * 1024
MAX_EXAMPLES: Final = 5
#: Upstream statuses that mean "timeout", besides the string "timeout".
TIMEOUT_STATUSES: Final = frozenset({408, 504})
STOP_RULE: Final = (
    "no data rewrite, schema change or semantic patch without a replay plan and rollback"
)
#: Dictionary key for lines without a readable ``function`` (JSON keys must be strings).
NO_FUNCTION: Final = "(none)"
REPORT_VERSION: Final = 1


class Verdict(StrEnum):
    """The five verdicts; every evidence line gets exactly one."""

    OK = "ok"
    VENDOR = "vendor"
    APPLICATION = "application"
    APP_BOTTLENECK = "app_bottleneck"
    UNKNOWN = "unknown"


#: Ties for the dominant verdict go to the first of these: no evidence first, then our own
#: code, the vendor last; ``ok`` never wins a tie against a problem.
TIE_ORDER: Final = (
    Verdict.UNKNOWN,
    Verdict.APPLICATION,
    Verdict.APP_BOTTLENECK,
    Verdict.VENDOR,
    Verdict.OK,
)


class Rule(StrEnum):
    """Which rule produced a verdict (three ways to be ``unknown``)."""

    OK = "ok"
    NO_UPSTREAM_STATUS = "no_upstream_status"
    UNREADABLE_UPSTREAM_STATUS = "unreadable_upstream_status"
    VENDOR = "vendor"
    APPLICATION = "application"
    APP_BOTTLENECK = "app_bottleneck"
    NO_RULE = "no_rule"


class SkipReason(StrEnum):
    """Why an input line is not an evidence line."""

    BLANK = "blank"
    TOO_LONG = "too_long"
    NOT_UTF8 = "not_utf8"
    NOT_JSON = "not_json"
    NOT_OBJECT = "not_object"
    #: The output names the line format (M1, docs/attribution.md), as it always has.
    NO_EVIDENCE_FIELDS = "no_m1_fields"


@dataclass(frozen=True, slots=True)
class EvidenceLine:
    """One evidence line, its values normalised; ``None`` means absent, null or unreadable.

    ``present`` holds the required fields the line carries (key present; null allowed only for
    the nullable ones); ``invalid`` maps carried-but-unreadable fields to their raw value.
    """

    source: str
    line_no: int
    present: frozenset[str]
    invalid: Mapping[str, str] = field(default_factory=dict)
    request_id: str | None = None
    function: str | None = None
    stage: str | None = None
    status: int | None = None
    latency_ms: float | None = None
    error_code: str | None = None
    upstream_status: int | str | None = None  # an HTTP status, "timeout" or None
    upstream_latency_ms: float | None = None
    ts: datetime | None = None


@dataclass(frozen=True, slots=True)
class Attribution:
    """A verdict, the rule that gave it, and a reason a person can check against the line."""

    verdict: Verdict
    rule: Rule
    reason: str


@dataclass(frozen=True, slots=True)
class Options:
    """Thresholds and filters of one analysis (defaults are the documented ones)."""

    slow_ms: float = DEFAULT_SLOW_MS
    small_share: float = SMALL_UPSTREAM_SHARE
    incident_gap_s: float = DEFAULT_INCIDENT_GAP_S
    since: datetime | None = None
    until: datetime | None = None
    functions: frozenset[str] = frozenset()


@dataclass(slots=True)
class Analysis:
    """The attributed lines in scope, in input order, and what was left out and why."""

    lines: list[tuple[EvidenceLine, Attribution]]
    skipped: Counter[str]
    filtered_out: int
    options: Options


# -- parsing ---------------------------------------------------------------------------------

_STATUS_RE = re.compile(r"[0-9]{3}")
_RELATIVE_RE = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*([smhd])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _raw(value: object) -> str:
    text = orjson.dumps(value, default=str).decode()
    return text if len(text) <= 60 else text[:57] + "..."


def _as_status(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str) and _STATUS_RE.fullmatch(value.strip()):
        value = int(value.strip())
    return value if isinstance(value, int) and 100 <= value <= 599 else None


def _as_upstream_status(value: object) -> int | str | None:
    if isinstance(value, str) and value.strip().lower() == "timeout":
        return "timeout"
    return _as_status(value)


def _as_ms(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        ms = float(value)
    except ValueError:
        return None
    return ms if math.isfinite(ms) and ms >= 0 else None


def _as_text(value: object) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value if isinstance(value, str) and value.strip() else None


def _as_time(value: object) -> datetime | None:
    moment: datetime
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            return None
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = value / 1000 if abs(value) >= 1e11 else value  # epoch ms or epoch s
        try:
            moment = datetime.fromtimestamp(seconds, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    else:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


_READERS: Final[dict[str, Callable[[object], object]]] = {
    "request_id": _as_text,
    "function": _as_text,
    "stage": _as_text,
    "status": _as_status,
    "latency_ms": _as_ms,
    "error_code": _as_text,
    "upstream_status": _as_upstream_status,
    "upstream_latency_ms": _as_ms,
}


# Memory per held line: at most 2**8 distinct ``present`` sets, one shared empty mapping.
_PRESENT: dict[frozenset[str], frozenset[str]] = {}
_NOTHING_INVALID: Final[Mapping[str, str]] = MappingProxyType({})
_REPEATED: Final = ("function", "stage", "error_code")
_ABSENT: Final = object()


def parse_line(
    raw: bytes, source: str = "-", line_no: int = 0, max_line_bytes: int = MAX_LINE_BYTES
) -> EvidenceLine | SkipReason:
    """Read one line (without its newline) as an evidence line, or say why it is not one."""
    if len(raw) > max_line_bytes:
        return SkipReason.TOO_LONG
    try:
        text = raw.decode("utf-8").lstrip("\ufeff")
    except UnicodeDecodeError:
        return SkipReason.NOT_UTF8
    if not text.strip():
        return SkipReason.BLANK
    try:
        obj = orjson.loads(text)
    except orjson.JSONDecodeError:
        return SkipReason.NOT_JSON
    if not isinstance(obj, dict):
        return SkipReason.NOT_OBJECT
    if not any(name in obj for name in REQUIRED_FIELDS):
        return SkipReason.NO_EVIDENCE_FIELDS
    present: set[str] = set()
    invalid: dict[str, str] = {}
    values: dict[str, Any] = {}
    for name, reader in _READERS.items():
        value = obj.get(name, _ABSENT)
        if value is _ABSENT or (value is None and name not in NULLABLE_FIELDS):
            continue
        present.add(name)
        if value is not None:
            values[name] = reader(value)
            if values[name] is None:
                invalid[name] = _raw(value)
    for name in _REPEATED:  # the same few names on every line: share one string object
        if isinstance(values.get(name), str):
            values[name] = sys.intern(values[name])
    stamp = next((obj[name] for name in TIME_FIELDS if obj.get(name) is not None), None)
    return EvidenceLine(
        source=source,
        line_no=line_no,
        present=_PRESENT.setdefault(carried := frozenset(present), carried),
        invalid=invalid or _NOTHING_INVALID,
        ts=_as_time(stamp),
        **values,
    )


def read_lines(
    stream: IO[bytes], source: str = "-", max_line_bytes: int = MAX_LINE_BYTES
) -> Iterator[EvidenceLine | SkipReason]:
    """Parse a byte stream line by line; a line over ``max_line_bytes`` is never held whole."""
    line_no = 0
    while chunk := stream.readline(max_line_bytes + 2):  # room for "\r\n"
        line_no += 1
        if not chunk.endswith(b"\n") and len(chunk) == max_line_bytes + 2:
            while (rest := stream.readline(65536)) and not rest.endswith(b"\n"):
                pass
            yield SkipReason.TOO_LONG
            continue
        line = chunk.removesuffix(b"\n").removesuffix(b"\r")
        if len(line) > max_line_bytes:
            yield SkipReason.TOO_LONG
        else:
            yield parse_line(line, source, line_no, max_line_bytes)


def parse_time_bound(text: str, now: datetime | None = None) -> datetime:
    """Read ``--since``/``--until``: ISO 8601 (naive = UTC) or a relative age like ``2h``."""
    relative = _RELATIVE_RE.fullmatch(text.strip())
    if relative:
        age = timedelta(seconds=float(relative[1]) * _UNITS[relative[2]])
        return (now or datetime.now(UTC)) - age
    moment = _as_time(text)
    if moment is None:
        raise ValueError(f"{text!r} is neither ISO 8601 nor a relative age like 30m, 2h, 7d")
    return moment


# -- verdicts --------------------------------------------------------------------------------


def _ms(value: float) -> str:
    return f"{value:g} ms"


def _upstream_label(status: int | str) -> str:
    if status == "timeout":
        return '"timeout"'
    if status in TIMEOUT_STATUSES:
        return f"{status} (timeout)"
    return f"{status} ({str(status)[0]}xx)"


def classify(
    line: EvidenceLine,
    *,
    slow_ms: float = DEFAULT_SLOW_MS,
    small_share: float = SMALL_UPSTREAM_SHARE,
) -> Attribution:
    """Apply the attribution rules to one line; the first matching rule wins."""
    status, latency = line.status, line.latency_ms
    upstream, upstream_ms = line.upstream_status, line.upstream_latency_ms
    slow = latency is not None and latency >= slow_ms
    if status is not None and status < 400 and not slow:
        timing = "no latency_ms" if latency is None else f"latency {_ms(latency)} < {_ms(slow_ms)}"
        return Attribution(Verdict.OK, Rule.OK, f"status {status} < 400 and {timing}")
    if upstream is None:
        if "upstream_status" in line.invalid:
            raw = line.invalid["upstream_status"]
            return Attribution(
                Verdict.UNKNOWN,
                Rule.UNREADABLE_UPSTREAM_STATUS,
                f'upstream_status {raw} is neither an HTTP status nor "timeout": '
                "no evidence, no blame",
            )
        return Attribution(
            Verdict.UNKNOWN,
            Rule.NO_UPSTREAM_STATUS,
            "no upstream_status (absent or null): no evidence, no blame",
        )
    upstream_failed = upstream == "timeout" or (
        isinstance(upstream, int) and (upstream >= 500 or upstream in TIMEOUT_STATUSES)
    )
    if status is not None and status >= 500 and upstream_failed:
        return Attribution(
            Verdict.VENDOR,
            Rule.VENDOR,
            f"upstream_status {_upstream_label(upstream)} and status {status}: "
            "likely vendor/backbone issue",
        )
    if isinstance(upstream, int) and 200 <= upstream < 300 and status is not None and status >= 400:
        return Attribution(
            Verdict.APPLICATION,
            Rule.APPLICATION,
            f"upstream_status {upstream} (2xx) and status {status}: "
            "likely application validation/logic issue",
        )
    parts = [
        "status missing or unreadable" if status is None else f"status {status}",
        f"upstream_status {_upstream_label(upstream)}",
    ]
    if slow and latency is not None:
        too_slow = f"latency {_ms(latency)} >= {_ms(slow_ms)}"
        if upstream_ms is None:
            parts.append(f"{too_slow} but no upstream_latency_ms to compare")
        else:
            share = upstream_ms / latency if latency else 1.0
            if share < small_share:
                return Attribution(
                    Verdict.APP_BOTTLENECK,
                    Rule.APP_BOTTLENECK,
                    f"{too_slow} while upstream took {_ms(upstream_ms)} "
                    f"({share:.1%} < {small_share * 100:g}%): likely application-side bottleneck",
                )
            parts.append(
                f"{too_slow} but upstream took {_ms(upstream_ms)} "
                f"({share:.1%} >= {small_share * 100:g}%)"
            )
    return Attribution(Verdict.UNKNOWN, Rule.NO_RULE, ", ".join(parts) + ": no rule attributes it")


def in_scope(line: EvidenceLine, options: Options) -> bool:
    """Whether a line passes the time window (since <= ts < until) and function filters."""
    if options.functions and line.function not in options.functions:
        return False
    if options.since is None and options.until is None:
        return True
    if line.ts is None:  # cannot prove it falls inside the window
        return False
    return (options.since is None or line.ts >= options.since) and (
        options.until is None or line.ts < options.until
    )


def analyze(items: Iterable[EvidenceLine | SkipReason], options: Options | None = None) -> Analysis:
    """Count skipped lines, filter the evidence lines and attribute each one kept."""
    options = options or Options()
    lines: list[tuple[EvidenceLine, Attribution]] = []
    skipped: Counter[str] = Counter()
    filtered_out = 0
    for item in items:
        if isinstance(item, SkipReason):
            skipped[item] += 1
        elif in_scope(item, options):
            verdict = classify(item, slow_ms=options.slow_ms, small_share=options.small_share)
            lines.append((item, verdict))
        else:
            filtered_out += 1
    return Analysis(lines, skipped, filtered_out, options)


# -- aggregation -----------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (``q`` in 0..1) of ``values``, or None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


def dominant_verdict(counts: Mapping[str, int]) -> tuple[str | None, float]:
    """The most frequent verdict and its share; ties go to the first in ``TIE_ORDER``."""
    total = sum(counts.values())
    if not total:
        return None, 0.0
    top = max(TIE_ORDER, key=lambda v: (counts.get(v, 0), -TIE_ORDER.index(v)))
    return top.value, round(counts.get(top, 0) / total, 4)


def _ranked(counter: Counter[str]) -> dict[str, int]:
    return dict(sorted(counter.items(), key=lambda kv: (-kv[1], kv[0])))


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _latencies(values: Iterable[float | None]) -> dict[str, float | None]:
    kept = [v for v in values if v is not None]
    return {"p50": percentile(kept, 0.5), "p95": percentile(kept, 0.95)}


def summarize(pairs: Sequence[tuple[EvidenceLine, Attribution]]) -> dict[str, Any]:
    """Counts by verdict, dominant verdict and share, codes, statuses, latencies and examples."""
    verdicts = {v.value: 0 for v in Verdict}
    examples: dict[str, list[str]] = {v.value: [] for v in Verdict}
    for line, attribution in pairs:
        verdicts[attribution.verdict] += 1
        if len(examples[attribution.verdict]) < MAX_EXAMPLES:
            evidence = line.request_id or f"{line.source}:{line.line_no}"
            examples[attribution.verdict].append(evidence)
    dominant, share = dominant_verdict(verdicts)
    upstream = Counter(
        "missing"
        if line.upstream_status is None and "upstream_status" not in line.invalid
        else "unreadable"
        if line.upstream_status is None
        else str(line.upstream_status)
        for line, _ in pairs
    )
    return {
        "lines": len(pairs),
        "verdicts": verdicts,
        "dominant": dominant,
        "share": share,
        "error_codes": _ranked(Counter(line.error_code for line, _ in pairs if line.error_code)),
        "upstream_statuses": _ranked(upstream),
        "unknown_reasons": _ranked(
            Counter(a.rule.value for _, a in pairs if a.verdict is Verdict.UNKNOWN)
        ),
        "latency_ms": _latencies(line.latency_ms for line, _ in pairs),
        "upstream_latency_ms": _latencies(line.upstream_latency_ms for line, _ in pairs),
        "examples": examples,
        "stop_rule": STOP_RULE if dominant == Verdict.UNKNOWN else None,
    }


def coverage(lines: Sequence[EvidenceLine]) -> dict[str, Any]:
    """How many lines carry all eight fields, and per field how often (and where) it is not."""
    complete = sum(1 for line in lines if len(line.present) == len(REQUIRED_FIELDS))
    fields: dict[str, Any] = {}
    for name in REQUIRED_FIELDS:
        missing = Counter(
            line.function or NO_FUNCTION for line in lines if name not in line.present
        )
        invalid = Counter(line.function or NO_FUNCTION for line in lines if name in line.invalid)
        fields[name] = {
            "missing": missing.total(),
            "missing_by_function": _ranked(missing),
            "invalid": invalid.total(),
            "invalid_by_function": _ranked(invalid),
        }
    return {
        "required": list(REQUIRED_FIELDS),
        "complete": complete,
        "incomplete": len(lines) - complete,
        "share": round(complete / len(lines), 4) if lines else None,
        "fields": fields,
    }


def find_incidents(
    pairs: Sequence[tuple[EvidenceLine, Attribution]], gap_s: float = DEFAULT_INCIDENT_GAP_S
) -> list[list[tuple[EvidenceLine, Attribution]]]:
    """Group non-ok lines into incidents: by timestamp with gaps <= ``gap_s``, across functions.

    Lines without a timestamp form runs in input order, ended by an ok line or a new input.
    """
    bad = [(line, a) for line, a in pairs if a.verdict is not Verdict.OK and line.ts]
    bad.sort(key=lambda pair: pair[0].ts or datetime.min)  # stable: input order on equal ts
    timed: list[list[tuple[EvidenceLine, Attribution]]] = []
    for pair in bad:
        last = timed[-1][-1][0].ts if timed else None
        assert pair[0].ts is not None  # filtered above; the assert narrows for mypy
        if last is not None and (pair[0].ts - last).total_seconds() <= gap_s:
            timed[-1].append(pair)
        else:
            timed.append([pair])
    untimed: list[list[tuple[EvidenceLine, Attribution]]] = []
    run: list[tuple[EvidenceLine, Attribution]] = []
    for line, attribution in pairs:
        if run and (attribution.verdict is Verdict.OK or line.source != run[-1][0].source):
            untimed.append(run)
            run = []
        if attribution.verdict is not Verdict.OK and line.ts is None:
            run.append((line, attribution))
    return timed + untimed + ([run] if run else [])


def report(analysis: Analysis, inputs: Sequence[str] = ()) -> dict[str, Any]:
    """The one JSON-ready report object (documented in docs/attribution.md)."""
    options, pairs = analysis.options, analysis.lines
    by_function: dict[str | None, list[tuple[EvidenceLine, Attribution]]] = {}
    for pair in pairs:
        by_function.setdefault(pair[0].function, []).append(pair)
    functions = [
        {"function": name, **summarize(group)}
        for name, group in sorted(by_function.items(), key=lambda kv: (kv[0] is None, kv[0] or ""))
    ]
    incidents = []
    for number, group in enumerate(find_incidents(pairs, options.incident_gap_s), start=1):
        start, end = group[0][0].ts, group[-1][0].ts
        incidents.append(
            {
                "id": number,
                "start": _iso(start),
                "end": _iso(end),
                "duration_s": (end - start).total_seconds() if start and end else None,
                "functions": _ranked(Counter(line.function or NO_FUNCTION for line, _ in group)),
                **summarize(group),
            }
        )
    stop_scopes = [f"function {f['function'] or NO_FUNCTION}" for f in functions if f["stop_rule"]]
    stop_scopes += [f"incident {i['id']}" for i in incidents if i["stop_rule"]]
    unknown = [line for line, a in pairs if a.verdict is Verdict.UNKNOWN]
    verdicts = {v.value: 0 for v in Verdict}
    verdicts.update(Counter(a.verdict.value for _, a in pairs))
    return {
        "version": REPORT_VERSION,
        "inputs": list(inputs),
        "params": {
            "slow_ms": options.slow_ms,
            "small_share": options.small_share,
            "incident_gap_s": options.incident_gap_s,
            "since": _iso(options.since),
            "until": _iso(options.until),
            "functions": sorted(options.functions),
        },
        "lines": len(pairs),
        "skipped": analysis.skipped.total(),
        "skipped_reasons": {r.value: analysis.skipped[r] for r in SkipReason},
        "filtered_out": analysis.filtered_out,
        "timestamped": sum(1 for line, _ in pairs if line.ts is not None),
        "coverage": coverage([line for line, _ in pairs]),
        "verdicts": verdicts,
        "functions": functions,
        "incidents": incidents,
        # The stop rule holds for every unknown line, not only where unknown dominates.
        "stop_rule": {
            "text": STOP_RULE,
            "applies_to": stop_scopes,
            "unknown_lines": len(unknown),
            "unknown_by_function": _ranked(
                Counter(line.function or NO_FUNCTION for line in unknown)
            ),
            "examples": [line.request_id or f"{line.source}:{line.line_no}" for line in unknown][
                :MAX_EXAMPLES
            ],
        }
        if unknown
        else None,
    }


def explain(analysis: Analysis) -> Iterator[dict[str, Any]]:
    """One record per attributed line: where it is, its request id, verdict, rule and reason."""
    for line, attribution in analysis.lines:
        yield {
            "request_id": line.request_id,
            "verdict": attribution.verdict.value,
            "reason": attribution.reason,
            "rule": attribution.rule.value,
            "function": line.function,
            "ts": _iso(line.ts),
            "source": line.source,
            "line": line.line_no,
        }
