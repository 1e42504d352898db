"""The attribution rules, coverage, incidents and report shape (usageledger.attribution)."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from usageledger.attribution import (
    MAX_LINE_BYTES,
    REQUIRED_FIELDS,
    STOP_RULE,
    Attribution,
    EvidenceLine,
    Options,
    Rule,
    SkipReason,
    Verdict,
    analyze,
    classify,
    coverage,
    dominant_verdict,
    explain,
    find_incidents,
    parse_line,
    parse_time_bound,
    percentile,
    read_lines,
    report,
)

T0 = datetime(2026, 11, 28, 10, 30, tzinfo=UTC)


def entry(**fields: Any) -> dict[str, Any]:
    """A complete, fast, successful evidence entry like ours, with ``fields`` overriding it."""
    base: dict[str, Any] = {
        "ts": "2026-11-28T10:30:00.123Z",
        "request_id": "req-1",
        "function": "ingest",
        "stage": "response",
        "status": 200,
        "latency_ms": 12.3,
        "error_code": None,
        "upstream_status": 200,
        "upstream_latency_ms": 4.1,
    }
    base.update(fields)
    return base


def without(name: str, **fields: Any) -> dict[str, Any]:
    """An entry with the key ``name`` removed altogether."""
    data = entry(**fields)
    del data[name]
    return data


def as_line(data: dict[str, Any], line_no: int = 1, source: str = "test.log") -> EvidenceLine:
    """Parse one entry as a log line, failing the test if it is not an evidence line."""
    parsed = parse_line(orjson.dumps(data), source, line_no)
    assert isinstance(parsed, EvidenceLine)
    return parsed


def verdict_of(data: dict[str, Any], **options: float) -> Attribution:
    """Classify one entry."""
    return classify(as_line(data), **options)


def log(*entries: dict[str, Any] | bytes) -> bytes:
    """Join entries (dicts as JSON, bytes as they are) into newline-terminated log bytes."""
    return b"".join((e if isinstance(e, bytes) else orjson.dumps(e)) + b"\n" for e in entries)


def analysed(*entries: dict[str, Any] | bytes, options: Options | None = None) -> dict[str, Any]:
    """Run the whole pipeline over some log lines and return the report object."""
    return report(analyze(read_lines(io.BytesIO(log(*entries)), "test.log"), options))


def at(seconds: float) -> str:
    """An ISO 8601 timestamp ``seconds`` after T0."""
    return (T0 + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


# -- verdicts ------------------------------------------------------------------------------


def test_a_fast_success_is_ok() -> None:
    """A status below 400 under the slow threshold is ok."""
    result = verdict_of(entry())
    assert result.verdict is Verdict.OK
    assert result.reason == "status 200 < 400 and latency 12.3 ms < 1000 ms"


@pytest.mark.parametrize("line", [without("upstream_status"), entry(upstream_status=None)])
def test_a_line_without_upstream_status_is_unknown(line: dict[str, Any]) -> None:
    """No upstream_status, absent or null, is no evidence and so no blame."""
    result = verdict_of({**line, "status": 503})
    assert result.verdict is Verdict.UNKNOWN
    assert result.rule is Rule.NO_UPSTREAM_STATUS
    assert "no evidence, no blame" in result.reason


def test_an_unreadable_upstream_status_is_unknown() -> None:
    """An upstream_status that is neither an HTTP status nor "timeout" is no evidence either."""
    result = verdict_of(entry(status=500, upstream_status="ECONNRESET"))
    assert result.verdict is Verdict.UNKNOWN
    assert result.rule is Rule.UNREADABLE_UPSTREAM_STATUS
    assert '"ECONNRESET"' in result.reason


@pytest.mark.parametrize("upstream", [500, 502, 503, 504, 408, "timeout", "TIMEOUT", "503"])
def test_an_upstream_5xx_or_timeout_with_a_5xx_is_vendor(upstream: int | str) -> None:
    """Upstream 5xx or timeout together with a 5xx status blames the vendor."""
    result = verdict_of(entry(status=503, upstream_status=upstream))
    assert result.verdict is Verdict.VENDOR
    assert "likely vendor/backbone issue" in result.reason


def test_an_upstream_failure_with_a_4xx_is_not_vendor() -> None:
    """The vendor rule needs the function's own status to be 5xx too."""
    assert verdict_of(entry(status=429, upstream_status=503)).verdict is Verdict.UNKNOWN


@pytest.mark.parametrize("status", [400, 409, 422, 500, 503])
def test_an_upstream_2xx_with_a_4xx_or_5xx_is_application(status: int) -> None:
    """A healthy upstream with a failing function points at our own validation or logic."""
    result = verdict_of(entry(status=status, upstream_status=204, error_code="VALIDATION_FAILED"))
    assert result.verdict is Verdict.APPLICATION
    assert "likely application validation/logic issue" in result.reason


def test_a_slow_line_with_a_fast_upstream_is_an_app_bottleneck() -> None:
    """Slow overall while the upstream took under a fifth of the time is our bottleneck."""
    result = verdict_of(entry(latency_ms=2400.0, upstream_latency_ms=120.0))
    assert result.verdict is Verdict.APP_BOTTLENECK
    assert "(5.0% < 20%)" in result.reason


def test_a_slow_line_with_a_slow_upstream_is_unknown_with_its_reason() -> None:
    """Slow with the upstream taking most of the time matches no rule, and says why."""
    result = verdict_of(entry(latency_ms=2400.0, upstream_latency_ms=2000.0))
    assert result.verdict is Verdict.UNKNOWN
    assert result.rule is Rule.NO_RULE
    assert "upstream took 2000 ms (83.3% >= 20%)" in result.reason


def test_a_slow_line_without_upstream_latency_is_unknown() -> None:
    """A bottleneck needs upstream_latency_ms to compare against."""
    result = verdict_of(entry(latency_ms=2400.0, upstream_latency_ms=None))
    assert result.verdict is Verdict.UNKNOWN
    assert "no upstream_latency_ms to compare" in result.reason


def test_an_upstream_4xx_with_a_5xx_is_unknown_with_its_reason() -> None:
    """Combinations no rule covers are unknown, naming the values."""
    result = verdict_of(entry(status=500, upstream_status=404))
    assert result.verdict is Verdict.UNKNOWN
    assert result.reason == "status 500, upstream_status 404 (4xx): no rule attributes it"


def test_a_line_without_status_is_never_ok() -> None:
    """Success needs a readable status."""
    assert verdict_of(without("status")).verdict is Verdict.UNKNOWN


def test_the_slow_threshold_and_upstream_share_are_options() -> None:
    """--slow-ms and --upstream-share move the bottleneck rule."""
    line = entry(latency_ms=600.0, upstream_latency_ms=150.0)
    assert verdict_of(line).verdict is Verdict.OK
    assert verdict_of(line, slow_ms=500).verdict is Verdict.UNKNOWN
    assert verdict_of(line, slow_ms=500, small_share=0.3).verdict is Verdict.APP_BOTTLENECK


def test_string_statuses_and_latencies_are_read_leniently() -> None:
    """Another service's strings ("502", "30020") are read as numbers."""
    line = as_line(entry(status="502", upstream_status="502", latency_ms="30020", error_code=7))
    assert (line.status, line.upstream_status, line.latency_ms) == (502, 502, 30020.0)
    assert line.error_code == "7"
    assert classify(line).verdict is Verdict.VENDOR


@pytest.mark.parametrize("bad", [True, "fast", [200], 99, 600, "2OO", 503.5])
def test_a_nonsense_status_is_unreadable_not_guessed(bad: object) -> None:
    """Booleans, words, lists and out-of-range or fractional statuses are invalid, not coerced."""
    line = as_line(entry(status=bad))
    assert line.status is None
    assert "status" in line.invalid


@pytest.mark.parametrize("bad", [True, "fast", -1, "NaN", "inf", [12]])
def test_a_nonsense_latency_is_unreadable_not_guessed(bad: object) -> None:
    """Latencies must be finite, non-negative numbers (or numeric strings)."""
    line = as_line(entry(latency_ms=bad))
    assert line.latency_ms is None
    assert "latency_ms" in line.invalid


# -- parsing and skipped lines ----------------------------------------------------------------


def test_non_json_and_non_object_lines_are_skipped_and_counted() -> None:
    """Plain text, JSON arrays and scalars, blank lines and unrelated objects are skipped."""
    data = analysed(b"INFO started", b"[1, 2]", b"42", b"", b'{"msg": "hi"}', entry())
    assert data["lines"] == 1
    assert data["skipped"] == 5
    assert data["skipped_reasons"] == {
        "blank": 1,
        "too_long": 0,
        "not_utf8": 0,
        "not_json": 1,
        "not_object": 2,
        "no_m1_fields": 1,
    }


def test_non_utf8_lines_are_skipped() -> None:
    """Bytes that are not UTF-8 make a skipped line, not a crash."""
    data = analysed(b'{"status": "\xff\xfe"}', entry())
    assert (data["lines"], data["skipped_reasons"]["not_utf8"]) == (1, 1)


def test_a_line_over_one_mib_is_skipped_and_the_next_line_still_read() -> None:
    """A huge line is counted as too_long and reading resumes after it."""
    huge = b'{"request_id": "' + b"x" * MAX_LINE_BYTES + b'"}'
    data = analysed(huge, entry())
    assert (data["lines"], data["skipped_reasons"]["too_long"]) == (1, 1)


def test_a_line_of_exactly_one_mib_is_still_read() -> None:
    """The limit is inclusive: a line of exactly 1 MiB is parsed."""
    line = orjson.dumps(entry(stage="")).replace(b'"stage":""', b'"stage":"%s"')
    padded = line.replace(b"%s", b"s" * (MAX_LINE_BYTES - len(line) + 2))
    assert len(padded) == MAX_LINE_BYTES
    assert analysed(padded)["lines"] == 1


def test_read_lines_never_holds_a_huge_line_whole() -> None:
    """With a small limit, an oversized line is drained in chunks and counted."""
    stream = io.BytesIO(b"a" * 1000 + b"\n" + log(entry()) + b"b" * 1000)
    items = list(read_lines(stream, "s", max_line_bytes=500))
    assert items[0] is SkipReason.TOO_LONG
    assert isinstance(items[1], EvidenceLine)
    assert items[2] is SkipReason.TOO_LONG


def test_crlf_endings_and_a_last_line_without_newline_are_read() -> None:
    """Windows line endings and an unterminated last line are ordinary lines."""
    stream = io.BytesIO(orjson.dumps(entry()) + b"\r\n" + orjson.dumps(entry()))
    assert all(isinstance(item, EvidenceLine) for item in read_lines(stream))


@pytest.mark.parametrize(
    "stamp",
    [
        {"ts": "2026-11-28T10:30:00Z"},
        {"time": "2026-11-28T11:30:00+01:00"},
        {"timestamp": "2026-11-28 10:30:00"},
        {"ts": 1795861800},
        {"ts": 1795861800000},
    ],
)
def test_the_timestamp_comes_from_ts_time_or_timestamp(stamp: dict[str, Any]) -> None:
    """ISO 8601 (naive means UTC) and epoch seconds or milliseconds are all read."""
    assert as_line({**without("ts"), **stamp}).ts == T0


def test_an_unreadable_timestamp_leaves_the_line_untimed() -> None:
    """A timestamp that cannot be read is no timestamp."""
    assert as_line(entry(ts="yesterday")).ts is None


# -- coverage ---------------------------------------------------------------------------------


def test_coverage_counts_lines_carrying_all_eight_fields() -> None:
    """A line carries a field when the key is present; the count is over evidence lines."""
    lines = [
        as_line(entry()),
        as_line(without("stage")),
        as_line(without("stage", function="export")),
    ]
    result = coverage(lines)
    assert (result["complete"], result["incomplete"], result["share"]) == (1, 2, 0.3333)
    assert result["required"] == list(REQUIRED_FIELDS)


def test_null_is_carried_only_for_the_nullable_fields() -> None:
    """Null error_code and upstream_* are carried; a null request_id or status is missing."""
    nullable = as_line(entry(error_code=None, upstream_status=None, upstream_latency_ms=None))
    assert coverage([nullable])["complete"] == 1
    result = coverage([as_line(entry(request_id=None, status=None))])
    assert result["fields"]["request_id"]["missing"] == 1
    assert result["fields"]["status"]["missing"] == 1


def test_coverage_says_which_fields_are_missing_in_which_functions() -> None:
    """Missing and unreadable fields are counted per field and per function."""
    lines = [
        as_line(without("upstream_status", function="backfill")),
        as_line(without("upstream_status", function="backfill")),
        as_line(without("upstream_status", function="ingest")),
        as_line(entry(latency_ms="fast")),
    ]
    fields = coverage(lines)["fields"]
    assert fields["upstream_status"]["missing"] == 3
    assert fields["upstream_status"]["missing_by_function"] == {"backfill": 2, "ingest": 1}
    assert fields["latency_ms"]["invalid_by_function"] == {"ingest": 1}
    assert fields["stage"] == {
        "missing": 0,
        "missing_by_function": {},
        "invalid": 0,
        "invalid_by_function": {},
    }


# -- aggregation and incidents ------------------------------------------------------------------


def test_percentiles_are_nearest_rank() -> None:
    """p50 and p95 are values that occurred, by the nearest-rank method."""
    values = [float(n) for n in range(1, 101)]
    assert (percentile(values, 0.5), percentile(values, 0.95)) == (50.0, 95.0)
    assert percentile([], 0.5) is None


def test_ties_for_the_dominant_verdict_go_to_unknown_then_application() -> None:
    """A split vote prefers unknown, then our own code, the vendor last, never ok."""
    assert dominant_verdict({"ok": 2, "vendor": 2, "unknown": 2}) == ("unknown", 0.3333)
    assert dominant_verdict({"vendor": 1, "application": 1}) == ("application", 0.5)
    assert dominant_verdict({"ok": 1, "vendor": 1}) == ("vendor", 0.5)
    assert dominant_verdict({}) == (None, 0.0)


def test_functions_carry_counts_codes_statuses_latency_and_examples() -> None:
    """Each function reports what it did, with request ids as evidence."""
    data = analysed(
        entry(request_id="a"),
        entry(request_id="b", status=503, upstream_status=504, error_code="DB", latency_ms=90),
        entry(request_id="c", status=503, upstream_status=503, error_code="DB", latency_ms=80),
    )
    (ingest,) = data["functions"]
    assert ingest["function"] == "ingest"
    assert ingest["verdicts"] == {
        "ok": 1,
        "vendor": 2,
        "application": 0,
        "app_bottleneck": 0,
        "unknown": 0,
    }
    assert (ingest["dominant"], ingest["share"]) == ("vendor", 0.6667)
    assert ingest["error_codes"] == {"DB": 2}
    assert ingest["upstream_statuses"] == {"200": 1, "503": 1, "504": 1}
    assert ingest["latency_ms"] == {"p50": 80.0, "p95": 90.0}
    assert ingest["examples"]["vendor"] == ["b", "c"]
    assert ingest["stop_rule"] is None


def test_examples_are_capped_at_five_and_fall_back_to_file_and_line() -> None:
    """Evidence lists at most five ids; a line without request_id is named by file:line."""
    data = analysed(*[entry(request_id=f"r{n}") for n in range(7)], without("request_id"))
    assert data["functions"][0]["examples"]["ok"] == ["r0", "r1", "r2", "r3", "r4"]
    assert analysed(without("request_id"))["functions"][0]["examples"]["ok"] == ["test.log:1"]


def test_the_stop_rule_is_printed_where_unknown_dominates() -> None:
    """Functions and incidents dominated by unknown carry the stop rule."""
    data = analysed(entry(status=500, upstream_status=None), entry(function="read"))
    ingest = data["functions"][0]
    assert (ingest["dominant"], ingest["stop_rule"]) == ("unknown", STOP_RULE)
    assert data["incidents"][0]["stop_rule"] == STOP_RULE
    assert data["stop_rule"] == {
        "text": STOP_RULE,
        "applies_to": ["function ingest", "incident 1"],
        "unknown_lines": 1,
        "unknown_by_function": {"ingest": 1},
        "examples": ["req-1"],
    }
    assert data["functions"][1]["stop_rule"] is None


def test_the_stop_rule_covers_an_unknown_line_where_it_does_not_dominate() -> None:
    """One request without evidence inside a vendor incident still falls under the rule."""
    data = analysed(
        entry(request_id="v1", status=503, upstream_status=503),
        entry(request_id="v2", status=503, upstream_status=503),
        entry(request_id="u1", status=500, upstream_status=None),
        entry(request_id="fine", function="read"),
    )
    assert [f["stop_rule"] for f in data["functions"]] == [None, None]
    assert data["incidents"][0]["dominant"] == "vendor"
    assert data["stop_rule"] == {
        "text": STOP_RULE,
        "applies_to": [],
        "unknown_lines": 1,
        "unknown_by_function": {"ingest": 1},
        "examples": ["u1"],
    }
    assert analysed(entry(request_id="fine"))["stop_rule"] is None


def failing(seconds: float, function: str = "ingest") -> dict[str, Any]:
    """A vendor-attributed line ``seconds`` after T0."""
    return entry(ts=at(seconds), function=function, status=503, upstream_status=503)


def test_non_ok_lines_close_in_time_form_one_incident_across_functions() -> None:
    """Failures under a minute apart are one incident even in different functions."""
    data = analysed(failing(0), failing(30, "read"), entry(ts=at(40)), failing(90))
    (incident,) = data["incidents"]
    assert incident["lines"] == 3
    assert incident["functions"] == {"ingest": 2, "read": 1}
    assert (incident["start"], incident["end"], incident["duration_s"]) == (
        "2026-11-28T10:30:00.000Z",
        "2026-11-28T10:31:30.000Z",
        90.0,
    )


def test_a_gap_over_the_window_splits_incidents() -> None:
    """A quiet spell longer than the window starts a new incident."""
    data = analysed(failing(0), failing(60), failing(121))
    assert [i["lines"] for i in data["incidents"]] == [2, 1]
    wider = analysed(failing(0), failing(60), failing(121), options=Options(incident_gap_s=61))
    assert [i["lines"] for i in wider["incidents"]] == [3]


def test_incidents_follow_timestamps_not_input_order() -> None:
    """Lines are ordered by their timestamp before incidents are cut."""
    data = analysed(failing(500), failing(0), failing(510), failing(10))
    assert [(i["start"], i["lines"]) for i in data["incidents"]] == [
        ("2026-11-28T10:30:00.000Z", 2),
        ("2026-11-28T10:38:20.000Z", 2),
    ]


def test_lines_without_timestamps_form_runs_in_input_order() -> None:
    """Untimed non-ok lines are one incident until an ok line or a new input ends the run."""
    bad = without("ts", status=500, upstream_status=503)
    lines = [as_line(bad, 1), as_line(bad, 2), as_line(without("ts"), 3), as_line(bad, 4)]
    lines.append(as_line(bad, 5, source="other.log"))
    pairs = [(line, classify(line)) for line in lines]
    assert [len(run) for run in find_incidents(pairs)] == [2, 1, 1]
    assert analysed(bad, bad)["incidents"][0]["start"] is None


def test_no_incidents_when_every_line_is_ok() -> None:
    """Only non-ok lines make incidents."""
    assert analysed(entry(), entry())["incidents"] == []


# -- filters --------------------------------------------------------------------------------


def test_since_and_until_keep_a_half_open_window() -> None:
    """since <= ts < until; untimed lines cannot be placed and are filtered out."""
    options = Options(since=T0 + timedelta(seconds=10), until=T0 + timedelta(seconds=20))
    data = analysed(
        entry(ts=at(5)), entry(ts=at(10)), entry(ts=at(20)), without("ts"), options=options
    )
    assert (data["lines"], data["filtered_out"]) == (1, 3)


def test_the_function_filter_keeps_only_named_functions() -> None:
    """--function narrows the lines analysed."""
    options = Options(functions=frozenset({"read"}))
    data = analysed(entry(), entry(function="read"), without("function"), options=options)
    assert (data["lines"], data["filtered_out"]) == (1, 2)
    assert [f["function"] for f in data["functions"]] == ["read"]


def test_time_bounds_are_iso_8601_or_relative_ages() -> None:
    """--since accepts ISO 8601 (naive is UTC) and ages like 90s, 30m, 2h and 7d."""
    assert parse_time_bound("2026-11-28T11:30:00+01:00") == T0
    assert parse_time_bound("2026-11-28 10:30") == T0
    assert parse_time_bound("2h", now=T0) == T0 - timedelta(hours=2)
    assert parse_time_bound("1.5d", now=T0) == T0 - timedelta(hours=36)
    with pytest.raises(ValueError, match="neither ISO 8601 nor a relative age"):
        parse_time_bound("last tuesday")


# -- report and explain ---------------------------------------------------------------------


def test_the_report_has_every_documented_key_even_when_empty() -> None:
    """An empty input still yields the full report shape with all five verdict keys."""
    data = analysed()
    assert set(data) >= {"lines", "skipped", "coverage", "verdicts", "functions", "incidents"}
    assert data["verdicts"] == {
        "ok": 0,
        "vendor": 0,
        "application": 0,
        "app_bottleneck": 0,
        "unknown": 0,
    }
    assert (data["lines"], data["functions"], data["incidents"], data["stop_rule"]) == (
        0,
        [],
        [],
        None,
    )
    assert data["coverage"]["share"] is None


def test_explain_gives_request_id_verdict_and_reason_per_line() -> None:
    """Each attributed line is explained, in input order, with where it came from."""
    stream = io.BytesIO(log(b"noise", entry(request_id="a"), entry(request_id="b", status=500)))
    records = list(explain(analyze(read_lines(stream, "app.log"))))
    assert [(r["request_id"], r["verdict"], r["line"]) for r in records] == [
        ("a", "ok", 2),
        ("b", "application", 3),
    ]
    assert all(r["reason"] and r["source"] == "app.log" for r in records)


# -- properties -----------------------------------------------------------------------------

json_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**53), max_value=2**53),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["timeout", "200", "503", "504", " 422 ", "", "fast", "1e3"]),
    st.text(max_size=8),
)
entries = st.dictionaries(st.sampled_from((*REQUIRED_FIELDS, "ts", "msg")), json_values)


@given(st.lists(entries, max_size=12))
def test_verdict_counts_always_sum_to_the_number_of_evidence_lines(
    objects: list[dict[str, Any]],
) -> None:
    """Every object carrying an evidence field gets exactly one verdict; the rest are skipped."""
    data = analysed(*objects)
    expected = sum(1 for o in objects if any(name in o for name in REQUIRED_FIELDS))
    assert data["lines"] == expected == sum(data["verdicts"].values())
    assert data["skipped"] == len(objects) - expected
    assert sum(f["lines"] for f in data["functions"]) == expected


@given(entries)
def test_a_line_without_upstream_status_is_never_vendor_or_application(
    data: dict[str, Any],
) -> None:
    """No upstream evidence can never blame the vendor or the application's logic."""
    data = {**data, "status": data.get("status", 500), "upstream_status": None}
    result = classify(as_line(data))
    assert result.verdict not in (Verdict.VENDOR, Verdict.APPLICATION, Verdict.APP_BOTTLENECK)
    assert result.reason


@given(st.binary(max_size=200))
def test_parsing_never_raises_on_arbitrary_bytes(raw: bytes) -> None:
    """Any bytes parse to an evidence line or a skip reason."""
    assert isinstance(parse_line(raw), EvidenceLine | SkipReason)
