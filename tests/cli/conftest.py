"""Fixtures of the command tests: the tracker's sample logs and a live server."""

from __future__ import annotations

from tests.tracker.conftest import cli_env, clock, live_server, logs

__all__ = ["cli_env", "clock", "live_server", "logs"]
