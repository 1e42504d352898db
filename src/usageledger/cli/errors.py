"""The one mapping from a command's failure to its message and exit status.

Every command fails through this module, and only this module ends the process:

- **1** (:data:`OPERATIONAL`): the command ran and could not finish. A domain refusal
  (:class:`~usageledger.errors.LedgerError`: no such user or token, a plan whose data changed),
  a database that cannot be reached, a file that cannot be read or written, an address that
  cannot be listened on, a server that refuses an upload, a check that found a difference.
- **2** (:data:`USAGE`): the command cannot run as asked. A bad option or argument value
  (:class:`~usageledger.errors.ValidationFailed`: a name, a time zone, a range, a plan file
  that breaks a rule), a price file that cannot be used
  (:class:`~usageledger.ledger.pricing.PricingError`, but for token counts it cannot price), a
  bad setting in the environment or the config file, a database URL that names no ledger
  (missing, empty or at another schema, an unknown database or a refused login). Click's own
  usage errors (an unknown option, a missing argument) exit 2 as well.

A failure is one ``error: …`` line on standard error (a domain error's details follow it,
indented), never a traceback. Nothing here imports rich: an error costs no table library.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from typing import NoReturn, TypeVar

import click

from usageledger.errors import LedgerError, ValidationFailed

T = TypeVar("T")

#: The command ran and could not finish.
OPERATIONAL = 1
#: The command cannot run as asked: usage or settings.
USAGE = 2

#: SQLSTATE classes that mean the URL is wrong rather than the server down: 28 (the login
#: was refused) and 3D (no database by that name).
_SETTINGS_SQLSTATES = ("28", "3D")
#: The same refusals as PostgreSQL words them when a connection fails (libpq gives no SQLSTATE
#: then): the server answered, and the database, role or password in the URL is wrong.
_SETTINGS_REFUSALS = (
    "does not exist",
    "password authentication failed",
    "no password supplied",
    "no pg_hba.conf entry",
)


def fail(message: str, status: int = OPERATIONAL, *, details: Iterable[str] = ()) -> NoReturn:
    """Print ``message`` as one ``error:`` line (then each of ``details``, indented) on
    standard error and exit with ``status``."""
    click.echo(f"{click.style('error:', fg='red')} {message}", err=True)
    for detail in details:
        click.echo(f"  {detail}", err=True)
    sys.exit(status)


def exit_with(status: int) -> NoReturn:
    """End with ``status`` when the output already says why: ``verify`` lists the differences
    it found on standard output, and their count is its result, not an error message."""
    sys.exit(status)


def usage(message: str) -> NoReturn:
    """Fail with exit status 2: the command cannot run as asked (an option or a setting)."""
    fail(message, USAGE)


def handled(exc: BaseException) -> bool:
    """Whether ``exc`` is a failure this module reports (rather than a bug to show in full)."""
    if isinstance(exc, (LedgerError, click.ClickException)) or _settings_error(exc):
        return True
    if _pricing_error(exc):
        return True
    if isinstance(exc, OSError):
        return not isinstance(exc, BrokenPipeError)  # click ends a closed pipe quietly
    return _database_error(exc) or _raised_by(exc, "sqlite3", "Error")


def exit_for(exc: BaseException) -> int:
    """The exit status of a failure: 2 for usage and settings, 1 for everything else."""
    if isinstance(exc, click.ClickException):
        return exc.exit_code
    if isinstance(exc, ValidationFailed) or _settings_error(exc):
        return USAGE
    if _pricing_error(exc):
        return OPERATIONAL if _counts_error(exc) else USAGE
    if _database_error(exc) and _names_no_ledger(exc):
        return USAGE
    return OPERATIONAL


def message_for(exc: BaseException) -> str:
    """The one line that says what failed (no statement, parameters or password)."""
    if isinstance(exc, LedgerError):
        return exc.message
    if isinstance(exc, click.ClickException):
        return exc.format_message()
    if isinstance(exc, OSError):
        reason = exc.strerror or type(exc).__name__
        return f"{exc.filename}: {reason}" if exc.filename else reason
    if _database_error(exc):
        return first_line(exc)
    return str(exc) or type(exc).__name__


def report(exc: BaseException, context: str = "") -> NoReturn:
    """Fail with ``exc``'s message (after ``context``, when given) and its exit status."""
    details: list[str] = []
    if isinstance(exc, LedgerError):
        details = [f"{d.get('loc')}: {d.get('message')}" for d in exc.details[1:]]
    message = message_for(exc)
    fail(f"{context}: {message}" if context else message, exit_for(exc), details=details)


def run(fn: Callable[[], T]) -> T:
    """Run a domain call; a domain error becomes its message (and details) and its exit status
    (2 when it refuses the command's input, 1 otherwise: :func:`exit_for`)."""
    try:
        return fn()
    except LedgerError as exc:
        report(exc)


def first_line(exc: BaseException) -> str:
    """The driver's own reason a database call failed, on one line (a connection error carries
    no statement, so no parameters; a password is never part of it)."""
    orig = getattr(exc, "orig", None) or exc
    lines = [line.strip() for line in str(orig).splitlines() if line.strip()]
    return lines[-1] if lines else type(orig).__name__


def _raised_by(exc: BaseException, module: str, name: str) -> bool:
    """Whether ``exc`` is a ``module.name``, without importing ``module``: a command that never
    loaded it cannot have raised it, and an error costs no import."""
    loaded = sys.modules.get(module)
    kind = getattr(loaded, name, None)
    return isinstance(kind, type) and isinstance(exc, kind)


def _settings_error(exc: BaseException) -> bool:
    """A bad setting in the environment or the config file (``SettingsError``)."""
    return _raised_by(exc, "usageledger.settings_rules", "SettingsError")


def _pricing_error(exc: BaseException) -> bool:
    """A price file, a price source or a config file's prices that cannot be used, or counts
    that cannot be priced (``PricingError``)."""
    return _raised_by(exc, "usageledger.ledger.pricing", "PricingError")


def _counts_error(exc: BaseException) -> bool:
    """Token counts that break the rules or that a price lists no rates for: the ledger's
    data, not the command's input."""
    return _raised_by(exc, "usageledger.ledger.pricing", "InvalidCountsError") or _raised_by(
        exc, "usageledger.ledger.pricing", "UnpricedCountsError"
    )


def _database_error(exc: BaseException) -> bool:
    """An error of the database layer (SQLAlchemy's)."""
    return _raised_by(exc, "sqlalchemy.exc", "SQLAlchemyError")


def _names_no_ledger(exc: BaseException) -> bool:
    """Whether a database error says the URL is wrong (no such database or role, a refused
    login) rather than that the server cannot be reached or failed."""
    sqlstate = getattr(getattr(exc, "orig", None), "sqlstate", None)
    if isinstance(sqlstate, str):
        return sqlstate.startswith(_SETTINGS_SQLSTATES)
    reason = first_line(exc)
    return "FATAL:" in reason and any(words in reason for words in _SETTINGS_REFUSALS)
