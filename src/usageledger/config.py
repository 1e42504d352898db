"""Settings, read from the environment (prefix ``USAGELEDGER_``), typed and validated.

A bad value fails loudly at start-up with the variable's name; nothing is built at import
time: :func:`load_settings` is called by the CLI, tests build :class:`Settings` directly.
"""

from __future__ import annotations

import ipaddress
from datetime import date
from pathlib import Path

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from usageledger.settings_rules import (
    MODEL_COLUMN_LENGTH,
    TIME_ZONE_COLUMN_LENGTH,
    SettingsError,
    check_home,
    check_time_zone,
    default_home,
    invalid,
)
from usageledger.source_registry import SOURCE_NAME

# Re-exported: the rules live in ``settings_rules`` (shared with the tracker's light reader).
__all__ = [
    "MODEL_COLUMN_LENGTH",
    "TIME_ZONE_COLUMN_LENGTH",
    "Settings",
    "SettingsError",
    "check_time_zone",
    "default_home",
    "load_settings",
]

#: Proxies whose ``X-Forwarded-For`` / ``X-Forwarded-Proto`` are believed by default: none.
#: A client on the same host could otherwise name any address it likes; an operator behind a
#: reverse proxy lists it (docs/operations.md shows ``127.0.0.1`` for a proxy on the host).
DEFAULT_TRUSTED_PROXIES = ""


class Settings(BaseSettings):
    """Every setting of the server and the CLI (see docs/configuration.md)."""

    model_config = SettingsConfigDict(
        env_prefix="USAGELEDGER_", extra="forbid", frozen=True, validate_default=True
    )

    home: Path = Field(default_factory=default_home)
    database_url: str | None = None
    #: Where evidence lines go: "-" for stdout, "off" to disable, else a file path (appended).
    log_file: str = "-"
    max_body_bytes: int = Field(default=1_048_576, ge=1024, le=64 * 1_048_576)
    max_buckets: int = Field(default=500, ge=1, le=10_000)
    #: At most the ``model`` column's length: a longer name could not be stored.
    max_model_length: int = Field(default=MODEL_COLUMN_LENGTH, ge=8, le=MODEL_COLUMN_LENGTH)
    bucket_floor: date = date(2020, 1, 1)
    future_skew_seconds: int = Field(default=900, ge=0, le=86_400)
    idempotency_ttl_seconds: int = Field(default=86_400, ge=60)
    idempotency_in_flight_seconds: int = Field(default=120, ge=5)
    #: Extra source names an operator accepts besides the built-in registry (comma-separated).
    extra_sources: str = ""
    default_time_zone: str = "UTC"
    statement_timeout_ms: int = Field(default=10_000, ge=100)
    db_pool_size: int = Field(default=10, ge=1, le=200)
    db_retries: int = Field(default=3, ge=0, le=20)
    #: Per-token budget: a burst of ``rate_burst`` requests, refilled at ``rate_per_minute``.
    rate_per_minute: float = Field(default=120.0, gt=0)
    rate_burst: int = Field(default=60, ge=1)
    #: Per-client-address budget of failed token look-ups (unknown or revoked tokens).
    auth_failures_per_minute: float = Field(default=30.0, gt=0)
    auth_failure_burst: int = Field(default=30, ge=1)
    #: Peers (addresses or networks, comma-separated) whose X-Forwarded-For and
    #: X-Forwarded-Proto are believed; empty: none, every peer is the client itself.
    trusted_proxies: str = DEFAULT_TRUSTED_PROXIES

    @field_validator("home", mode="before")
    @classmethod
    def _home_path(cls, value: object) -> object:
        return check_home(value) if isinstance(value, str) else value

    @field_validator("default_time_zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        check_time_zone(value)
        return value

    @field_validator("extra_sources")
    @classmethod
    def _valid_sources(cls, value: str) -> str:
        names = [s.strip() for s in value.split(",") if s.strip()]
        bad = [name for name in names if not SOURCE_NAME.match(name)]
        if bad:
            raise ValueError(
                f"invalid source name(s) {bad}: use 1-32 of a-z, 0-9, '_' or '-', "
                "starting with a letter"
            )
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _proxy_networks(cls, value: str) -> str:
        for entry in (e.strip() for e in value.split(",")):
            if not entry:
                continue
            try:
                ipaddress.ip_network(entry)  # strict, as uvicorn reads it
            except ValueError:
                raise ValueError(
                    f"{entry!r} is not an IP address or network (e.g. 10.0.0.5 or "
                    "10.0.0.0/8, host bits zero); '*' is refused: any client could then "
                    "choose its own address"
                ) from None
        return value

    @field_validator("database_url")
    @classmethod
    def _known_scheme(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not value.startswith(("sqlite://", "postgresql://", "postgresql+psycopg://")):
            raise ValueError("must start with sqlite:// or postgresql:// (psycopg 3 is used)")
        return value

    @field_validator("log_file")
    @classmethod
    def _log_target(cls, value: str) -> str:
        if not value.strip():
            raise ValueError('must be "-" (stdout), "off", or a file path')
        return value

    @property
    def resolved_database_url(self) -> str:
        """The database URL, defaulting to ``server.db`` in ``home``."""
        if self.database_url:
            url = self.database_url
            if url.startswith("postgresql://"):
                url = "postgresql+psycopg://" + url[len("postgresql://") :]
            return url
        return f"sqlite:///{self.home / 'server.db'}"

    @property
    def trusted_proxy_list(self) -> list[str]:
        """The proxies of ``trusted_proxies``, for uvicorn's ``forwarded_allow_ips``."""
        return [e.strip() for e in self.trusted_proxies.split(",") if e.strip()]

    @property
    def extra_source_names(self) -> frozenset[str]:
        """Operator-registered source names."""
        return frozenset(s.strip() for s in self.extra_sources.split(",") if s.strip())


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment; raise :class:`SettingsError` naming each bad one."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            name = "USAGELEDGER_" + "_".join(str(p) for p in err["loc"]).upper()
            lines.append(f"{name}: {err['msg']}")
        raise invalid(lines) from exc
