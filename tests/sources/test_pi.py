"""pi-agent and OpenClaw session parsers: pi's usage mapping, forks, archives, model state."""

from __future__ import annotations

from pathlib import Path

import orjson

from usageledger.sources.openclaw import OpenClawParser
from usageledger.sources.pi import PiParser

from ._support import SAMPLES, Sums, by_day, jsonl, parse_in_two, scan

PI = PiParser()
CLAW = OpenClawParser()
PI_ENV = {"PI_AGENT_DIR": str(SAMPLES / "pi" / "sessions")}
CLAW_ENV = {"OPENCLAW_DIR": f"{SAMPLES / 'openclaw'},{SAMPLES / 'openclaw-legacy'}"}


def test_pi_samples_total_by_hand_with_the_fork_counted_once(tmp_path: Path) -> None:
    """pi input is net of both caches; the forked copy of a response counts once."""
    events, problems = scan(PI, PI_ENV, tmp_path)
    # 2025-09-15: a1 input 100 + cacheWrite 200 = 300, cached 1000, output 50 (1350);
    #             a2 input 20, cached 1300, output 30 (1350). The fork's copy of a1 is a duplicate.
    # 2025-09-16: a4 input 10 + 100 = 110, cached 2000, output 5 (2115).
    assert by_day(events) == {
        "2025-09-15": Sums(input=320, cached=2300, output=80, cache_write=200),
        "2025-09-16": Sums(input=110, cached=2000, output=5, cache_write=100),
    }
    assert sum(e.total_tokens for e in events) == 2700 + 2115
    # The malformed line and the totalTokens-only usage are reported, never guessed.
    reasons = sorted(p.reason for p in problems)
    assert len(reasons) == 2
    assert reasons[0].startswith("malformed JSON")
    assert reasons[1] == "usage has totalTokens but no input/output (not counted)"


def test_pi_events_carry_the_header_session_and_cwd(tmp_path: Path) -> None:
    """Session id and project come from the session header line."""
    events, _ = scan(PI, PI_ENV, tmp_path)
    first = min(events, key=lambda e: e.timestamp)
    assert first.session_id == "aaaaaaaa-1111-4111-8111-111111111111"
    assert first.project == "/home/u/proj"
    assert first.model == "claude-sonnet-4-5"


def test_a_migrated_file_with_new_entry_ids_keeps_the_same_keys() -> None:
    """pi rewrites v1 files with fresh entry ids: keys come from the response, not the id."""
    message = {
        "role": "assistant",
        "model": "m",
        "usage": {"input": 1, "output": 2, "cacheRead": 3, "cacheWrite": 4},
        "timestamp": 1757930400000,
    }
    one = PI.parse(
        jsonl({"type": "message", "id": "11111111", "message": message}), path="a.jsonl", state=None
    )
    two = PI.parse(
        jsonl({"type": "message", "id": "22222222", "message": message}), path="b.jsonl", state=None
    )
    assert [e.event_key for e in one.events] == [e.event_key for e in two.events]


def test_pi_usage_on_a_user_message_is_reported() -> None:
    """Non-zero usage where pi never writes it is a problem, not an event."""
    line = {
        "type": "message",
        "timestamp": "2025-09-15T10:00:00Z",
        "message": {"role": "user", "usage": {"input": 5}},
    }
    result = PI.parse(jsonl(line), path="x.jsonl", state=None)
    assert result.events == []
    assert [p.reason for p in result.problems] == [
        "usage on a message that is not an assistant's (not counted)"
    ]


def test_pi_discovers_its_own_agent_dir_and_the_default(tmp_path: Path) -> None:
    """PI_AGENT_DIR wins, then PI_CODING_AGENT_DIR/sessions, then ~/.pi/agent/sessions."""
    home = tmp_path / "home"
    default = home / ".pi/agent/sessions/--p--/t_s.jsonl"
    own = tmp_path / "agent/sessions/--q--/t_s.jsonl"
    for path in (default, own):
        path.parent.mkdir(parents=True)
        path.write_text("")
    assert PI.discover({}, home) == [default]
    assert PI.discover({"PI_CODING_AGENT_DIR": str(tmp_path / "agent")}, home) == [own]
    assert PI.discover({"PI_AGENT_DIR": str(tmp_path / "none")}, home) == []
    assert PI.discover({}, tmp_path / "absent") == []


def test_openclaw_samples_total_by_hand_with_archives_counted_once(tmp_path: Path) -> None:
    """A response in a live file and in its .reset archive counts once; legacy trees are read."""
    events, problems = scan(CLAW, CLAW_ENV, tmp_path)
    assert problems == []
    # 2025-09-15: o1 1660 + 108928 cached + 55 out (110643, also in the reset archive);
    #             o2 3 + 1000 written = 1003, cached 5000, output 200 (6203).
    # 2025-09-16: o3 (deleted archive) 400 + 100 = 500; o5 (legacy tree) 50 + 100 cached + 25 = 175.
    assert by_day(events) == {
        "2025-09-15": Sums(input=2663, cached=113928, output=255, cache_write=1000),
        "2025-09-16": Sums(input=450, cached=100, output=125),
    }
    assert sum(e.total_tokens for e in events) == 116846 + 675


def test_openclaw_models_come_from_the_message_or_the_latest_model_change(tmp_path: Path) -> None:
    """model_change modelId and model-snapshot data.modelId fill in a message without a model."""
    events, _ = scan(CLAW, CLAW_ENV, tmp_path)
    models = {e.timestamp.isoformat(): e.model for e in events}
    assert models == {
        "2025-09-15T12:00:00+00:00": "gpt-5.2",  # from model_change
        "2025-09-15T13:00:00+00:00": "claude-sonnet-4-5",  # its own
        "2025-09-16T10:00:00+00:00": "gpt-5.2",
        "2025-09-16T11:00:00+00:00": "claude-opus-4-1",  # from model-snapshot
    }
    sessions = {e.session_id for e in events}
    assert "c0ffee00-3333-4333-8333-333333333333" in sessions


def test_openclaw_model_state_survives_an_incremental_read() -> None:
    """A model_change read in one call still names the model of a response read in the next."""
    data = (
        SAMPLES / "openclaw/agents/main/sessions/c0ffee00-3333-4333-8333-333333333333.jsonl"
    ).read_bytes()
    cut = data.index(b"\n", data.index(b"model_change")) + 1
    events, problems, consumed = parse_in_two(CLAW, data, "c0ffee00.jsonl", cut)
    assert consumed == len(data)
    assert problems == []
    assert [e.model for e in events] == ["gpt-5.2", "claude-sonnet-4-5"]
    assert events[0].session_id == "c0ffee00-3333-4333-8333-333333333333"


def test_openclaw_usage_on_a_transcript_artifact_is_reported() -> None:
    """A delivery mirror with non-zero usage is not counted, and says so."""
    line = {
        "type": "message",
        "message": {
            "role": "assistant",
            "provider": "openclaw",
            "model": "delivery-mirror",
            "usage": {"input": 5, "output": 5},
            "timestamp": 1758016801000,
        },
    }
    result = CLAW.parse(jsonl(line), path="x.jsonl", state=None)
    assert result.events == []
    assert [p.reason for p in result.problems] == [
        "usage on an OpenClaw transcript artifact (not counted)"
    ]


def test_openclaw_discovers_state_dirs_legacy_names_and_archives(tmp_path: Path) -> None:
    """~/.openclaw and the legacy ~/.clawdbot/.moltbot/.moldbot; OPENCLAW_STATE_DIR; archives."""
    home = tmp_path / "home"
    names = [
        "s.jsonl",
        "s.jsonl.reset.2025-09-15T14-00-00.000Z",
        "s.jsonl.deleted.1",
        "sessions.json",
    ]
    for state in (".openclaw", ".clawdbot", ".moltbot", ".moldbot"):
        for name in names:
            path = home / state / "agents/main/sessions" / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("")
    found = CLAW.discover({}, home)
    assert len(found) == 12
    assert not any(p.name == "sessions.json" for p in found)
    only = CLAW.discover({"OPENCLAW_STATE_DIR": str(home / ".moltbot")}, home)
    assert {p.parent.parent.parent.parent.name for p in only} == {".moltbot"}
    assert CLAW.discover({}, tmp_path / "absent") == []


def test_openclaw_state_is_json_serialisable() -> None:
    """The scanner stores the state as JSON."""
    result = CLAW.parse(b'{"type":"model_change","modelId":"x"}\n', path="s.jsonl", state=None)
    assert orjson.loads(orjson.dumps(result.state))["model"] == "x"
