"""``usageledger serve``: run the HTTP server (and, with --demo, a ready demo user)."""

from __future__ import annotations

import json
import socket

import click
import uvicorn
from rich.console import Console
from sqlalchemy import Connection

from usageledger.cli.env import Env, now_ms, pass_env
from usageledger.cli.errors import fail, usage
from usageledger.demo import seed_history
from usageledger.ledger import accounts
from usageledger.store.engine import Database, make_engine
from usageledger.store.migrate import current_revision, head_revision, upgrade

err = Console(stderr=True, soft_wrap=True)
#: What ``serve`` hands uvicorn: the app factory of the composition root, by name (so that each
#: worker process builds its own app).
APP_FACTORY = "usageledger.server:app_from_environment"
DEMO_USER = "demo"
DEMO_DEVICE = "demo-laptop"


def ensure_demo(database: Database) -> tuple[str, str]:
    """Issue a fresh device token and read token (secrets) for the demo user, whom
    ``seed_history`` created."""

    def go(conn: Connection) -> tuple[str, str]:
        device, _ = accounts.issue_token(
            conn, DEMO_USER, kind="device", device_name=DEMO_DEVICE, now_ms=now_ms()
        )
        read, _ = accounts.issue_token(
            conn, DEMO_USER, kind="read", device_name=None, now_ms=now_ms()
        )
        return device, read

    return database.write(go)


def curl_example(base: str, secret: str) -> str:
    """A working ``curl`` ingest example for the current half-hour."""
    import time

    start = int(time.time()) // 1800 * 1800
    from usageledger.buckets import iso_utc

    bucket = {
        "bucket_start": iso_utc(start),
        "source": "codex",
        "model": "gpt-5-codex",
        "input_tokens": 1200,
        "cached_input_tokens": 800,
        "output_tokens": 300,
        "reasoning_output_tokens": 120,
        "total_tokens": 2300,
        "cache_write_tokens": 0,
    }
    body = json.dumps({"schema_version": 2, "buckets": [bucket]})
    return (
        f"curl -sS -X POST {base}/v1/ingest \\\n"
        f"  -H 'Authorization: Bearer {secret}' \\\n"
        "  -H 'Content-Type: application/json' \\\n"
        f"  -d '{body}'"
    )


@click.command()
@click.option("--user", default=DEMO_USER, show_default=True, help="The demo user's name.")
@click.option("--tz", "time_zone", default="Europe/Berlin", show_default=True)
@click.option("--days", default=180, show_default=True, type=click.IntRange(1, 1100))
@click.option("--seed", default=7, show_default=True, type=int)
@pass_env
def demo(env: Env, user: str, time_zone: str, days: int, seed: int) -> None:
    """Seed a realistic synthetic history (devices, models, weekly rhythm) for a demo user.

    Running it again changes nothing (same values, same revisions).

    \b
    Example:
      usageledger demo --days 120
    """
    settings = env.settings
    engine = env.database.engine
    if settings.resolved_database_url.startswith("sqlite"):
        upgrade(engine)
    summary = seed_history(
        env.database, user=user, time_zone=time_zone, days=days, seed=seed, now_ms=now_ms()
    )
    err.print(
        f"{summary.user}: {summary.buckets:,} buckets over {summary.days} days "
        f"({summary.inserted:,} new)"
    )


def check_address(host: str, port: int) -> None:
    """Fail (exit 1, one line naming the address) unless ``host:port`` can be listened on now.

    The check binds the address as uvicorn will (``SO_REUSEADDR``, IPv6 for a host with a
    colon) and lets it go at once, before any database work; uvicorn would otherwise log its
    own message and exit 3.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
    except OSError as exc:
        shown = f"[{host}]:{port}" if family == socket.AF_INET6 else f"{host}:{port}"
        reason = exc.strerror or str(exc)
        fail(f"cannot listen on {shown}: {reason}")


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8787, show_default=True, type=int)
@click.option("--workers", default=1, show_default=True, type=int, help="Server processes.")
@click.option("--demo", is_flag=True, help="Create a demo user and print a curl example.")
@pass_env
def serve(env: Env, host: str, port: int, workers: int, demo: bool) -> None:
    """Run the server. A SQLite database is migrated first; PostgreSQL needs `db upgrade`.

    \b
    Examples:
      usageledger serve --demo
      USAGELEDGER_DATABASE_URL=postgresql://postgres@127.0.0.1/ledger usageledger serve --workers 2
    """
    settings = env.settings
    check_address(host, port)
    url = settings.resolved_database_url
    engine = make_engine(url, statement_timeout_ms=settings.statement_timeout_ms)
    if url.startswith("sqlite"):
        upgrade(engine)
    elif current_revision(engine) != head_revision():
        usage("the database schema is not current; run `usageledger db upgrade`")
    if demo:
        database = Database(engine)
        summary = seed_history(database, user=DEMO_USER, now_ms=now_ms())
        secret, read_secret = ensure_demo(database)
        err.print(f"demo history: {summary.buckets:,} buckets over {summary.days} days")
        base = f"http://{host}:{port}"
        err.print(f"[bold]usageledger[/bold] on {base} — database {url}")
        err.print(f"demo user [bold]{DEMO_USER}[/bold], device token (shown once): {secret}")
        err.print(f"dashboard: open {base}/ and sign in with the read token {read_secret}")
        err.print("try an upload:\n")
        print(curl_example(base, secret), flush=True)
        print(flush=True)
    engine.dispose()
    uvicorn.run(
        APP_FACTORY,
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="warning",
        access_log=False,
        # Only USAGELEDGER_TRUSTED_PROXIES may set the client address and scheme from
        # X-Forwarded-For / X-Forwarded-Proto (uvicorn would otherwise read FORWARDED_ALLOW_IPS,
        # which may say "*"): the per-address budget of failed sign-ins depends on it.
        proxy_headers=bool(settings.trusted_proxy_list),
        forwarded_allow_ips=settings.trusted_proxy_list or None,
    )


#: Registered by :data:`usageledger.cli.root.COMMANDS`.
commands = [serve, demo]
