"""The dashboard in Debian's chromium (Playwright): sign in, numbers, range, zone, day, sign out.

Nothing here reads the real calendar: the demo history ends on :data:`NOW`'s day, the server's
clock is frozen at it and so is the browser's (``Date``), so the pages show the same days, and
the same bars, on every day the suite runs. ``USAGELEDGER_TEST_NOW`` (an ISO instant in the
past, UTC unless it names an offset) moves that clock, to run the suite at another date or to
take screenshots dated today. ``USAGELEDGER_SCREENSHOTS=docs/screenshots`` writes the
screenshots where the README and docs/dashboard.md show them; the default is
``tests/screenshots/`` (ignored by git).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import Engine

from bench.harness import serve_app
from tests.conftest import Persona
from usageledger.api.read import clock
from usageledger.config import Settings
from usageledger.demo import seed_history
from usageledger.evidence import EvidenceLogger
from usageledger.ledger import accounts
from usageledger.server import create_app
from usageledger.store.engine import Database

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
#: "Now" for the server, the browser and the demo history: a fixed instant (a Wednesday
#: afternoon), or ``$USAGELEDGER_TEST_NOW``.
NOW = datetime.fromisoformat(os.environ.get("USAGELEDGER_TEST_NOW", "2026-11-18T14:10:00Z"))
NOW = NOW if NOW.tzinfo else NOW.replace(tzinfo=UTC)
#: The demo user's zone (``seed_history``'s default): the history's days are its local days.
DEMO_ZONE = ZoneInfo("Europe/Berlin")
#: The daily chart's parts, named by what they are rather than by class: each day's column (the
#: one element that carries the day's total) and the coloured segments stacked in it.
DAYS = "#daily [data-total]"
SEGMENTS = "#daily rect[data-day]:not([data-total])"
ROOT = Path(__file__).resolve().parents[2]
#: Where screenshots go: ``$USAGELEDGER_SCREENSHOTS`` (relative to the repository), else
#: ``tests/screenshots``.
SHOTS = ROOT / os.environ.get("USAGELEDGER_SCREENSHOTS", "tests/screenshots")
#: The exact policy every page is sent with: only this server, no inline script or style.
CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
#: Phone width (an iPhone 12-15) and the smallest chart text readable there, in CSS pixels.
PHONE = {"width": 390, "height": 844}
MIN_TEXT_PX = 10
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = [
    pytest.mark.browser,
    # The dashboard only reads the API, whose engines are covered elsewhere: SQLite suffices.
    pytest.mark.parametrize("db_url", ["sqlite"], indirect=True),
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(),
        reason="browser tests skipped: Debian's chromium is missing (apt-get install chromium)",
    ),
]


@pytest.fixture
def live(settings: Settings, engine: Engine, db: Database) -> Iterator[tuple[str, str]]:
    """A real server on loopback over seeded data; yields (base URL, read token).

    Seeded, issued and answering at :data:`NOW`: 120 days of history ending on NOW's local day
    in the demo user's zone, devices last uploading at NOW, and the read API's clock (its
    default ranges, "today", the leaderboard's periods) frozen there.
    """
    if datetime.now(UTC) < NOW:
        pytest.fail(
            f"USAGELEDGER_TEST_NOW={NOW.isoformat()} is in the future: the demo history "
            "stops at the real current time"
        )
    now = int(NOW.timestamp() * 1000)
    seed_history(db, user="demo", days=120, end=NOW.astimezone(DEMO_ZONE).date(), now_ms=now)
    token, _ = db.write(
        lambda c: accounts.issue_token(c, "demo", kind="read", device_name=None, now_ms=now)
    )
    logger = EvidenceLogger(settings.log_file)
    app = create_app(settings, engine=engine, evidence=logger)
    app.dependency_overrides[clock] = lambda: NOW
    with serve_app(app) as running:
        yield running.base_url, token
    logger.close()


@pytest.fixture
def page(live: tuple[str, str]) -> Iterator[Any]:
    """A fresh chromium page whose ``Date`` says :data:`NOW` (timers still run)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        context = browser.new_context(viewport={"width": 1200, "height": 900})
        context.clock.set_fixed_time(NOW)
        yield context.new_page()
        context.close()
        browser.close()


def api(base: str, token: str, path: str, **params: Any) -> Any:
    """The read API's answer for comparison with what the page shows."""
    response = httpx.get(
        f"{base}{path}", params=params, headers={"Authorization": f"Bearer {token}"}
    )
    response.raise_for_status()
    return response.json()


def sign_in(page: Any, base: str, token: str) -> None:
    """Submit the sign-in form and wait for the charts."""
    page.goto(base + "/")
    page.fill("#token", token)
    page.click("button[type=submit]")
    page.wait_for_selector("#daily svg")
    page.wait_for_selector("#heatmap svg")


def metric(page: Any, label: str) -> str:
    """The exact number under a totals card."""
    return str(page.locator(f'[data-metric="{label}"] .exact').inner_text())


def shown_range(page: Any) -> dict[str, str]:
    """The range and zone the page shows, as read API parameters."""
    return {
        "from": page.input_value("#from"),
        "to": page.input_value("#to"),
        "tz": page.input_value("#tz"),
    }


#: Each text of a chart: its font size as drawn on screen (computed size times the SVG's scale
#: to CSS pixels) and the height of its box on screen.
CHART_TEXT = """selector => [...document.querySelectorAll(selector + ' svg text')].map(t => {
  const m = t.getScreenCTM();
  return { text: t.textContent, box: t.getBoundingClientRect().height,
           size: parseFloat(getComputedStyle(t).fontSize) * Math.hypot(m.a, m.b) };
})"""


def redrawn(page: Any, selector: str) -> None:
    """Wait until the chart in ``selector`` is drawn at its container's width (after a resize
    the script redraws it; a chart that never does is left as it is)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    with contextlib.suppress(PlaywrightTimeout):
        page.wait_for_function(
            """selector => { const box = document.querySelector(selector);
              const svg = box.querySelector('svg');
              return svg && Math.abs(svg.viewBox.baseVal.width - box.clientWidth) <= 1; }""",
            arg=selector,
            timeout=5000,
        )


def chart_text(page: Any, selector: str) -> list[dict[str, Any]]:
    """The texts of the chart in ``selector`` once it is drawn at its container's width."""
    redrawn(page, selector)
    texts: list[dict[str, Any]] = page.evaluate(CHART_TEXT, selector)
    return texts


def assert_readable(texts: list[dict[str, Any]]) -> None:
    """Every chart text is at least MIN_TEXT_PX on screen."""
    assert texts, "the chart has no text"
    small = [t for t in texts if t["size"] < MIN_TEXT_PX or t["box"] < MIN_TEXT_PX]
    assert not small, f"chart text below {MIN_TEXT_PX}px on screen: {small}"


def test_a_person_signs_in_and_sees_the_api_numbers(page: Any, live: tuple[str, str]) -> None:
    """The totals shown equal the read API's summary; the token is kept in an HttpOnly cookie.
    At phone width nothing scrolls sideways and the charts' text stays readable."""
    base, token = live
    sign_in(page, base, token)
    shown = shown_range(page)
    summary = api(base, token, "/v1/usage/summary", **shown)
    assert metric(page, "Total tokens") == f"{summary['totals']['total_tokens']:,}"
    assert metric(page, "Cost") == summary["totals"]["cost_usd"]
    cookies = page.context.cookies()
    assert [(c["name"], c["httpOnly"], c["sameSite"]) for c in cookies] == [
        ("ul_token", True, "Strict")
    ]
    assert token not in page.url
    assert (
        page.locator("#models tr").count()
        == len(api(base, token, "/v1/usage/models", **shown)["models"]) + 1
    )
    me = api(base, token, "/v1/me")
    heat = api(base, token, "/v1/usage/heatmap", to=shown["to"], weeks=52, tz=me["time_zone"])
    assert page.locator("#heatmap rect.cell").count() == len(heat["cells"])
    assert_readable(chart_text(page, "#daily"))
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "dashboard.png"), full_page=True)
    page.set_viewport_size(PHONE)
    daily = chart_text(page, "#daily")  # redrawn at the phone's width
    assert_readable(daily)
    assert {t["text"] for t in daily} >= {shown["from"], shown["to"]}  # the axis's first, last day
    page.screenshot(path=str(SHOTS / "dashboard-phone.png"), full_page=True)
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"] + 1
    page.locator(DAYS).nth(-2).click()
    page.wait_for_selector("#hourly svg")
    assert_readable(chart_text(page, "#hourly"))
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"] + 1


def test_changing_range_and_time_zone_reloads_the_numbers(page: Any, live: tuple[str, str]) -> None:
    """A 90-day range in another zone shows that range's API totals."""
    base, token = live
    sign_in(page, base, token)
    page.select_option("#preset", "90")
    page.select_option("#tz", "America/New_York")
    page.click("#apply")
    to = page.input_value("#to")
    start = page.input_value("#from")
    summary = api(
        base, token, "/v1/usage/summary", **{"from": start, "to": to, "tz": "America/New_York"}
    )
    page.wait_for_function(
        "expected => document.querySelector('[data-metric=\"Total tokens\"] .exact')"
        ".textContent === expected",
        arg=f"{summary['totals']['total_tokens']:,}",
    )
    # The totals render before the daily chart's own requests finish: wait for the chart too.
    page.wait_for_function(
        "selector => document.querySelectorAll(selector).length === 90", arg=DAYS
    )
    assert page.locator(DAYS).count() == 90


def test_clicking_a_day_opens_its_half_hours(page: Any, live: tuple[str, str]) -> None:
    """The day detail shows every half-hour of the clicked day and its API total."""
    base, token = live
    sign_in(page, base, token)
    bars = page.locator(DAYS)
    totals = {
        bar.get_attribute("data-day"): int(bar.get_attribute("data-total")) for bar in bars.all()
    }
    day = max(totals, key=lambda d: totals[d])  # the busiest day of the range
    page.locator(f'{DAYS}[data-day="{day}"]').click()
    page.wait_for_selector("#hourly svg")
    hourly = api(base, token, "/v1/usage/hourly", day=day)
    assert page.locator("#hourly svg").get_attribute("data-slots") == str(len(hourly["slots"]))
    assert f"{hourly['totals']['total_tokens']:,} tokens" in page.inner_text("#day-title")
    page.screenshot(path=str(SHOTS / "day.png"), full_page=True)


#: Every point of the daily chart that must open a day but reaches another element: for each
#: day's column, the middle of each coloured segment, the top of the empty part above the
#: stack, the bottom of the column and its left edge (the gutter beside the bars).
MISSED_POINTS = """([days, segments]) => [...document.querySelectorAll(days)].flatMap(column => {
  const day = column.dataset.day, box = column.getBoundingClientRect();
  const points = [...document.querySelectorAll(segments)].filter(s => s.dataset.day === day)
    .map(s => s.getBoundingClientRect()).map(b => [b.left + b.width / 2, b.top + b.height / 2]);
  const middle = box.left + box.width / 2;
  points.push([middle, box.top + 1], [middle, box.bottom - 1], [box.left + 0.5, box.bottom - 2]);
  return points.map(([x, y]) => {
    const hit = document.elementFromPoint(x, y);
    return { day, x, y, hit: hit && hit.closest('[data-total]') === column ? null
      : (hit ? hit.outerHTML.slice(0, 120) : 'nothing') };
  }).filter(p => p.hit !== null);
})"""


def boxes(page: Any, selector: str) -> list[tuple[str, dict[str, float]]]:
    """(day, bounding box on screen) of every element of the daily chart matched by
    ``selector``."""
    return [(e.get_attribute("data-day"), e.bounding_box()) for e in page.locator(selector).all()]


def click_targets(page: Any) -> list[tuple[str, str, float, float]]:
    """Where a person could click to open a day, as (what, day, x, y) on screen: the middle of
    the tallest coloured segment, of the smallest one on another day, of the empty part above
    the lowest stack of a third day, the gutter beside that tallest segment, and an empty day's
    column if the range has one."""
    segments = boxes(page, SEGMENTS)
    columns = dict(boxes(page, DAYS))
    tops = {day: min(b["y"] for d, b in segments if d == day) for day, _ in segments}
    tall_day, tall = max(segments, key=lambda s: s[1]["height"])
    small_day, small = min((s for s in segments if s[0] != tall_day), key=lambda s: s[1]["height"])
    # The lowest stack of a third day: the biggest gap above a bar.
    low_day = max((d for d in tops if d not in (tall_day, small_day)), key=lambda d: tops[d])
    low = columns[low_day]
    gap = {**low, "height": tops[low_day] - low["y"]}
    targets = [
        ("tallest segment", tall_day, *middle(tall)),
        ("smallest segment", small_day, *middle(small)),
        ("gap above a bar", low_day, *middle(gap)),
        ("gutter beside a bar", tall_day, columns[tall_day]["x"] + 0.5, middle(tall)[1]),
    ]
    empty = [day for day in columns if day not in tops]
    if empty:
        targets.append(("empty day", empty[0], *middle(columns[empty[0]])))
    return targets


def middle(box: dict[str, float]) -> tuple[float, float]:
    """The centre of a bounding box."""
    return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2


def opens(page: Any, day: str, act: Any) -> None:
    """``act()`` asks the server for ``day``'s half-hours and the day view shows that day."""
    with page.expect_response(lambda r: "/v1/usage/hourly" in r.url) as response:
        act()
    assert response.value.url.split("day=")[1].split("&")[0] == day
    page.wait_for_function(
        "day => document.querySelector('#day-title').textContent.startsWith(day + ' (')", arg=day
    )
    assert not page.locator("#day-detail").is_hidden()


@pytest.mark.parametrize("width", [1200, PHONE["width"]])
def test_every_point_of_a_day_bar_belongs_to_that_day(
    page: Any, live: tuple[str, str], width: int
) -> None:
    """Whatever the day's numbers, each coloured segment, the gap above the stack and the
    gutter beside it reach the day's own column, and the column takes a click at its centre."""
    base, token = live
    page.set_viewport_size({"width": width, "height": 2400})  # the whole chart on screen
    sign_in(page, base, token)
    redrawn(page, "#daily")
    assert page.locator(SEGMENTS).count() > page.locator(DAYS).count()  # stacks, not single bars
    assert page.evaluate(MISSED_POINTS, [DAYS, SEGMENTS]) == []
    for column in page.locator(DAYS).all():
        column.click(trial=True, timeout=2000)  # Playwright's check that nothing covers it


@pytest.mark.parametrize("width", [1200, PHONE["width"]])
def test_a_click_anywhere_on_a_day_bar_opens_that_day(
    page: Any, live: tuple[str, str], width: int
) -> None:
    """Real mouse clicks on a tall and a small segment, above a bar, beside it and on an empty
    day each open the day under the pointer."""
    base, token = live
    page.set_viewport_size({"width": width, "height": 2400})  # nothing scrolls after a click
    sign_in(page, base, token)
    redrawn(page, "#daily")
    targets = click_targets(page)
    assert len({day for _, day, _, _ in targets}) >= 3, targets
    for what, day, x, y in targets:
        # Recomputed after every click: the page could have moved.
        target = next(t for t in click_targets(page) if t[0] == what)
        assert target == (what, day, x, y), f"the chart moved under the pointer: {what}"
        opens(page, day, lambda x=x, y=y: page.mouse.click(x, y))


def test_the_keyboard_opens_a_day_and_moves_between_days(page: Any, live: tuple[str, str]) -> None:
    """The chart is one Tab stop on the newest day; Enter opens it, the arrow keys and Home move
    to other days, and each day's column names its day and total for assistive technology."""
    base, token = live
    sign_in(page, base, token)
    columns = page.locator(DAYS)
    days = [c.get_attribute("data-day") for c in columns.all()]
    assert [c.get_attribute("tabindex") for c in columns.all()] == ["-1"] * (len(days) - 1) + ["0"]
    newest = columns.last
    assert newest.get_attribute("role") == "button"
    total = int(newest.get_attribute("data-total"))
    assert newest.get_attribute("aria-label") == f"{days[-1]}: {total:,} tokens, open the day"
    newest.focus()
    opens(page, days[-1], lambda: page.keyboard.press("Enter"))
    page.keyboard.press("ArrowLeft")
    opens(page, days[-2], lambda: page.keyboard.press("Enter"))
    page.keyboard.press("Home")
    opens(page, days[0], lambda: page.keyboard.press(" "))
    assert columns.first.get_attribute("tabindex") == "0"


def test_signing_out_forgets_the_cookie(page: Any, live: tuple[str, str]) -> None:
    """After sign-out the sign-in form is back and the API refuses the old session."""
    base, token = live
    sign_in(page, base, token)
    page.click("#signout")
    page.wait_for_selector("#token")
    assert page.context.cookies() == []
    page.goto(base + "/leaderboard")
    assert page.locator("#token").count() == 1


def test_the_leaderboard_page_lists_only_opted_in_people(
    page: Any, live: tuple[str, str], db: Database, alice: Persona
) -> None:
    """The leaderboard shows display names of opted-in users after a refresh."""
    from usageledger.ledger import profile
    from usageledger.ledger.leaderboard import refresh
    from usageledger.ledger.pricing import PriceBook

    base, token = live
    demo = db.read(lambda c: accounts.find_user(c, "demo"))
    assert demo is not None
    demo_id = int(demo["user_id"])
    # Through the profile's own path, which also claims the name's key the board checks.
    db.write(
        lambda c: profile.update_profile(
            c, demo_id, leaderboard_opt_in=True, display_name="Demo Dana"
        ),
        user_id=demo_id,
    )
    db.write(lambda c: refresh(c, PriceBook.load_default(), now=NOW))
    sign_in(page, base, token)
    page.goto(base + "/leaderboard")
    page.wait_for_selector('#board[data-period="week"]')
    # All time: the week of NOW may have no usage yet (early on a Monday), all time always has.
    page.click('button[data-period="all"]')
    page.wait_for_selector('#board[data-period="all"] tr >> nth=1')
    page.screenshot(path=str(SHOTS / "leaderboard.png"), full_page=True)
    board = page.inner_text("#board")
    assert "Demo Dana" in board
    assert "alice" not in board
    entries = api(base, token, "/v1/leaderboard", period="all")["entries"]
    assert [e["display_name"] for e in entries] == ["Demo Dana"]
    assert page.locator("#board tr").count() == len(entries) + 1
    incomplete = any(e["unpriced_tokens"] for e in entries)
    assert ("leave out models without a price" in page.inner_text("#board-meta")) == incomplete


@pytest.mark.parametrize("bad", ["ul_read_nope", "", "ul_dev_x" * 50])
def test_a_wrong_token_shows_a_clear_message_and_nothing_else(
    page: Any, live: tuple[str, str], bad: str
) -> None:
    """An unknown token: a message on the sign-in page, no cookie, no data."""
    base, _ = live
    page.goto(base + "/")
    page.fill("#token", bad)
    page.evaluate("document.querySelector('#token').removeAttribute('required')")
    page.click("button[type=submit]")
    page.wait_for_selector("#token")
    if bad:
        assert "unknown or revoked" in page.inner_text(".error") or "read token" in page.inner_text(
            ".error"
        )
    else:
        assert "Enter a read token" in page.inner_text(".error")
    assert page.context.cookies() == []
    assert page.locator("#totals").count() == 0


def test_the_pages_load_nothing_from_elsewhere_under_a_self_only_policy(
    page: Any, live: tuple[str, str]
) -> None:
    """Sign-in, dashboard, a day and the leaderboard request only this server's URLs, every
    page is sent with the exact 'self'-only Content-Security-Policy, and the browser reports
    no violation of it (nor any other error)."""
    base, token = live
    requests: list[str] = []
    documents: list[tuple[str, int, str | None]] = []
    errors: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.on(
        "response",
        lambda response: (
            documents.append(
                (response.url, response.status, response.headers.get("content-security-policy"))
            )
            if response.request.resource_type == "document"
            else None
        ),
    )
    page.on(
        "console", lambda message: errors.append(message.text) if message.type == "error" else None
    )
    page.on("pageerror", lambda error: errors.append(str(error)))
    sign_in(page, base, token)
    page.locator(DAYS).nth(-2).click()
    page.wait_for_selector("#hourly svg")
    page.goto(base + "/leaderboard")
    page.wait_for_selector('#board[data-period="week"]')

    outside = [url for url in requests if not url.startswith(base + "/")]
    assert not outside, f"requests outside {base}: {outside}"
    paths = {url.removeprefix(base).split("?")[0] for url in requests}
    assert {"/", "/login", "/static/app.css", "/static/app.js", "/v1/me"} <= paths
    assert {"/v1/usage/summary", "/v1/usage/daily", "/v1/usage/hourly", "/v1/leaderboard"} <= paths
    # The sign-in form, the redirect after it, the dashboard and the leaderboard.
    assert [(url.removeprefix(base), status) for url, status, _ in documents] == [
        ("/", 200),
        ("/login", 303),
        ("/", 200),
        ("/leaderboard", 200),
    ]
    assert {policy for _, _, policy in documents} == {CSP}
    assert not errors

    signed_out = httpx.get(base + "/")
    signed_in = httpx.get(base + "/", headers={"Cookie": f"ul_token={token}"})
    assert 'name="token"' in signed_out.text  # the sign-in form
    assert 'data-page="dashboard"' in signed_in.text
    for response in (signed_out, signed_in):
        assert response.headers["content-security-policy"] == CSP
        assert response.headers["x-content-type-options"] == "nosniff"
