"""Display names: look-alikes of a taken name or of ``anonymous #<rank>`` are refused."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import unicodedata
from collections import defaultdict
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection, Engine, select, text, update
from sqlalchemy.exc import IntegrityError

from tests.conftest import Persona, make_persona
from usageledger import confusables
from usageledger.confusables import fold, is_reserved
from usageledger.errors import ValidationFailed
from usageledger.ledger import profile
from usageledger.store.engine import Database
from usageledger.store.tables import users

#: Look-alikes of "alice", each with what makes it one.
ALICE_LOOKALIKES = {
    "Cyrillic а": "\u0430lice",
    "Greek α": "\u03b1lice",
    "Cyrillic і": "al\u0456ce",
    "fullwidth": "\uff41\uff4c\uff49\uff43\uff45",
    "upper case": "ALICE",
    "title case": "Alice",
    "capital I for l": "AIice",
    "digit 1 for l": "a1ice",
    "mathematical bold": "\U0001d41a\U0001d425\U0001d422\U0001d41c\U0001d41e",
    "zero-width space": "al\u200bice",
    "zero-width joiner": "a\u200dlice",
    "soft hyphen": "ali\u00adce",
    "variation selector": "alice\ufe0f",
    "combining grapheme joiner": "al\u034fice",
    "small capitals": "\u1d00\u029f\u026a\u1d04\u1d07",  # ᴀʟɪᴄᴇ
}

#: Look-alikes of the leaderboard's own names for users without one.
RESERVED = {
    "plain": "anonymous #1",
    "Cyrillic а (the report)": "\u0430nonymous #1",
    "Greek ο": "an\u03bfnymous #2",
    "Cyrillic capitals": "\u0410N\u041eNYM\u041eUS #3",
    "fullwidth": "\uff41\uff4e\uff4f\uff4e\uff59\uff4d\uff4f\uff55\uff53 \uff03\uff11",
    "upper case": "ANONYMOUS #1",
    "rn for m": "anonyrnous #1",
    "two spaces": "anonymous  #1",
    "Hangul filler for the space": "anonymous\u3164#1",
    "combining dot above": "anonymou\u0307s #1",
    "combining dot below, decomposed": "anony\u0323mous #4",
    "music sharp for #": "anonymous \u266f1",
    "no number": "Anonymous",
    "small capitals": "\u1d00\u0274\u1d0f\u0274\u028f\u1d0d\u1d0f\u1d1c\ua731 #1",  # ᴀɴᴏɴʏᴍᴏᴜꜱ
}


@pytest.mark.parametrize("lookalike", ALICE_LOOKALIKES.values(), ids=ALICE_LOOKALIKES.keys())
def test_look_alikes_fold_to_one_key(lookalike: str) -> None:
    """Homoglyphs, compatibility forms, case and invisible characters all fold away."""
    assert fold(lookalike) == fold("alice")


def test_a_precomposed_and_a_decomposed_accent_fold_alike() -> None:
    """``é`` as one code point and as ``e`` plus a combining acute are one name."""
    assert fold("Ren\u00e9e") == fold("Rene\u0301e") == fold("REN\u00c9E")


@pytest.mark.parametrize(
    ("one", "other"),
    [("alice", "bob"), ("alice", "alicia"), ("Zoë", "Zoe"), ("alice smith", "alicesmith")],
)
def test_names_that_differ_to_the_eye_keep_distinct_keys(one: str, other: str) -> None:
    """Accents and spaces are part of a name: only look-alikes collide."""
    assert fold(one) != fold(other)


@pytest.mark.parametrize("name", RESERVED.values(), ids=RESERVED.keys())
def test_every_look_alike_of_anonymous_is_reserved(name: str) -> None:
    """The reserved check compares folds, so no homoglyph or mark gets a name past it."""
    assert is_reserved(name)
    with pytest.raises(ValidationFailed) as caught:
        profile.check_display_name(name)
    assert caught.value.details[0]["loc"] == "body.display_name"
    assert "reserved" in caught.value.message


@pytest.mark.parametrize("name", ["alice", "Anon", "nonymous", "famous #1", "Ann O'Nymous"])
def test_names_that_only_share_letters_with_anonymous_are_free(name: str) -> None:
    """The prefix is the whole word "anonymous", folded."""
    assert not is_reserved(name)
    assert profile.check_display_name(name) == name


def test_every_group_of_the_confusables_table_is_a_star_around_its_prototype() -> None:
    """What :func:`confusables.table` assumes of the package's undirected pairs holds."""
    import json
    from importlib import resources

    raw = resources.files(confusables.DATA_PACKAGE).joinpath(confusables.DATA_FILE).read_text()
    edges: dict[str, set[str]] = defaultdict(set)
    for source, homoglyphs in json.loads(raw).items():
        for glyph in homoglyphs:
            a, b = confusables._unwrap(source), confusables._unwrap(glyph["c"])
            edges[a].add(b)
            edges[b].add(a)
    for group in confusables.groups(edges):
        assert sum(len(m) > 1 for m in group) <= 1, group
        if len(group) > 2:
            (centre,) = [m for m in group if len(edges[m]) == len(group) - 1]
            assert all(edges[m] == {centre} for m in group - {centre}), group
    table = confusables.table()
    assert all(
        "".join(table.get(c, c) for c in unicodedata.normalize("NFD", p))
        == unicodedata.normalize("NFD", p)
        for p in set(table.values())
    ), "the table maps in one pass"


def test_the_confusables_table_is_read_on_first_use_only() -> None:
    """Importing the profile and leaderboard modules loads no confusables data."""
    code = (
        "import sys\n"
        "import usageledger.ledger.leaderboard, usageledger.ledger.profile\n"
        "from usageledger import confusables\n"
        "assert 'confusable_homoglyphs' not in sys.modules, 'imported'\n"
        "assert confusables.table.cache_info().currsize == 0, 'read'\n"
        "confusables.fold('alice')\n"
        "assert confusables.table.cache_info().currsize == 1\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


# --- on both engines ---------------------------------------------------------------------


def set_name(db: Database, who: Persona, name: str | None) -> profile.Profile:
    """PATCH-like: set ``who``'s display name in a write transaction of their own."""
    found, _ = db.write(
        lambda c: profile.update_profile(c, who.user_id, display_name=name), user_id=who.user_id
    )
    return found


def keys(db: Database) -> dict[int, tuple[str | None, str | None]]:
    """Every user's (display_name, display_name_key)."""
    rows = db.read(
        lambda c: c.execute(
            select(users.c.user_id, users.c.display_name, users.c.display_name_key)
        ).all()
    )
    return {int(r[0]): (r[1], r[2]) for r in rows}


#: The look-alikes a user may type (format characters are refused before the fold).
PRINTABLE_LOOKALIKES = {k: v for k, v in ALICE_LOOKALIKES.items() if v.isprintable()}


@pytest.mark.usefixtures("db_url")
@pytest.mark.parametrize(
    "lookalike", PRINTABLE_LOOKALIKES.values(), ids=PRINTABLE_LOOKALIKES.keys()
)
def test_bob_cannot_take_a_look_alike_of_alices_name(
    db: Database, alice: Persona, bob: Persona, lookalike: str
) -> None:
    """Once Alice holds "alice", every look-alike is taken for Bob, and he keeps his own."""
    set_name(db, alice, "alice")
    set_name(db, bob, "bob")
    with pytest.raises(ValidationFailed) as caught:
        set_name(db, bob, lookalike)
    assert caught.value.details[0]["loc"] == "body.display_name"
    assert "taken" in caught.value.message
    assert keys(db)[bob.user_id] == ("bob", fold("bob"))


@pytest.mark.usefixtures("db_url")
def test_invisible_format_characters_are_refused_outright(db: Database, alice: Persona) -> None:
    """A zero-width joiner or space is not printable: such a name never reaches the fold."""
    for name in ("a\u200dlice", "al\u200bice", "ali\u00adce"):
        with pytest.raises(ValidationFailed, match="printable"):
            set_name(db, alice, name)


@pytest.mark.usefixtures("db_url")
def test_alice_may_restyle_her_own_name_and_release_it(
    db: Database, alice: Persona, bob: Persona
) -> None:
    """Her own look-alikes are hers; a cleared name is free for the next user."""
    set_name(db, alice, "alice")
    assert set_name(db, alice, "ALICE").display_name == "ALICE"
    assert keys(db)[alice.user_id] == ("ALICE", fold("alice"))
    set_name(db, alice, None)
    assert keys(db)[alice.user_id] == (None, None)
    assert set_name(db, bob, "Alice").display_name == "Alice"


@pytest.mark.usefixtures("db_url")
def test_the_unique_index_refuses_a_second_holder_of_a_key(
    engine: Engine, db: Database, alice: Persona, bob: Persona
) -> None:
    """The database itself, not only the look-up, keeps a key to one user."""
    set_name(db, alice, "alice")
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(
            update(users)
            .where(users.c.user_id == bob.user_id)
            .values(display_name="\u0430lice", display_name_key=fold("alice"))
        )


def waiting_on_a_lock(engine: Engine) -> bool:
    """PostgreSQL: whether some backend of this database waits for a lock."""
    with engine.connect() as conn:
        count = conn.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
        ).scalar_one()
    return bool(count)


@pytest.mark.usefixtures("db_url")
def test_of_two_concurrent_claims_of_one_name_exactly_one_wins(
    engine: Engine, db: Database, alice: Persona, bob: Persona
) -> None:
    """Bob claims "Carol" while Alice's claim of "carol" is not yet committed: on PostgreSQL
    his look-up cannot see hers and his UPDATE waits on the unique index, then fails as a
    422; on SQLite he waits for the write slot and the look-up sees her name."""
    claimed, release = threading.Event(), threading.Event()
    outcome: dict[str, Any] = {}

    def alices(conn: Connection) -> None:
        profile.update_profile(conn, alice.user_id, display_name="carol")
        claimed.set()
        assert release.wait(20)

    def bobs(conn: Connection) -> None:
        profile.update_profile(conn, bob.user_id, display_name="Carol")

    def run(who: Persona, fn: Any) -> None:
        try:
            outcome[who.name] = db.write(fn, user_id=who.user_id)
        except ValidationFailed as exc:
            outcome[who.name] = exc

    first = threading.Thread(target=run, args=(alice, alices))
    second = threading.Thread(target=run, args=(bob, bobs))
    first.start()
    assert claimed.wait(20)
    second.start()
    if engine.dialect.name == "postgresql":
        deadline = time.monotonic() + 20
        while not waiting_on_a_lock(engine):
            assert time.monotonic() < deadline, "Bob's UPDATE never waited on Alice's"
            time.sleep(0.02)
    else:
        time.sleep(0.2)
    release.set()
    first.join(30)
    second.join(30)
    assert outcome["alice"] is None
    assert isinstance(outcome["bob"], ValidationFailed), outcome
    assert outcome["bob"].details[0]["loc"] == "body.display_name"
    held = keys(db)
    assert held[alice.user_id] == ("carol", fold("carol"))
    assert held[bob.user_id] == (None, None)


@pytest.mark.usefixtures("db_url")
def test_many_racing_claims_leave_one_holder(db: Database) -> None:
    """Six users claim look-alikes of one name at once: one wins, five get a 422."""
    people = [make_persona(db, f"user{i}") for i in range(6)]
    spellings = ["dave", "DAVE", "d\u0430ve", "\uff44\uff41\uff56\uff45", "Dave", "dav\u0435"]
    start = threading.Barrier(len(people))
    outcome: dict[int, str] = {}

    def claim(who: Persona, name: str) -> None:
        start.wait(10)
        try:
            set_name(db, who, name)
            outcome[who.user_id] = "won"
        except ValidationFailed:
            outcome[who.user_id] = "refused"

    threads = [
        threading.Thread(target=claim, args=(p, n)) for p, n in zip(people, spellings, strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(outcome.values()) == ["refused"] * 5 + ["won"]
    holders = [uid for uid, (_, key) in keys(db).items() if key == fold("dave")]
    assert holders == [uid for uid, result in outcome.items() if result == "won"]


@pytest.mark.usefixtures("db_url")
def test_patch_me_answers_a_taken_name_with_a_422_naming_the_field(
    client: TestClient, alice: Persona, bob: Persona
) -> None:
    """The HTTP answer: VALIDATION_FAILED at body.display_name, in the one error shape."""
    ok = client.patch("/v1/me", json={"display_name": "alice"}, headers=alice.headers(read=True))
    assert ok.status_code == 200, ok.text
    for name in ("\u0430lice", "ALICE"):
        taken = client.patch("/v1/me", json={"display_name": name}, headers=bob.headers())
        assert taken.status_code == 422, taken.text
        error = taken.json()["error"]
        assert error["code"] == "VALIDATION_FAILED"
        assert [d["loc"] for d in error["details"]] == ["body.display_name"]
        assert "taken" in error["message"]
    reserved = client.patch(
        "/v1/me", json={"display_name": "\u0430nonymous #1"}, headers=bob.headers()
    )
    assert reserved.status_code == 422, reserved.text
    assert "reserved" in reserved.json()["error"]["message"]
    assert client.get("/v1/me", headers=bob.headers()).json()["display_name"] is None


def test_i_and_l_are_one_letter_so_a_capital_i_cannot_pass_for_an_l() -> None:
    """The one bridge between case and look: ``I`` looks like ``l`` and folds like ``i``."""
    assert fold("AIice") == fold("Alice") == fold("alice") == fold("ALICE")
    assert fold("bili") == fold("bill")  # the documented price of the bridge


@pytest.mark.usefixtures("db_url")
def test_a_name_whose_fold_does_not_fit_the_key_is_refused(db: Database, alice: Persona) -> None:
    """Compatibility forms can expand a name eighteen times; such a name is a 422."""
    with pytest.raises(ValidationFailed, match="expand"):
        set_name(db, alice, "\ufdfa" * 20)
    assert keys(db)[alice.user_id] == (None, None)


@pytest.mark.usefixtures("db_url")
def test_a_name_of_blanks_and_invisible_characters_only_is_refused(
    db: Database, alice: Persona
) -> None:
    """Hangul fillers and variation selectors are printable, but fold to nothing."""
    with pytest.raises(ValidationFailed, match="visible"):
        set_name(db, alice, "\u3164\ufe0f\u3164")
