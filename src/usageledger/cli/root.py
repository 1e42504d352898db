"""The ``usageledger`` group: it lists every command without importing one and imports a
command's module only when that command runs (:mod:`usageledger.cli` starts here)."""

from __future__ import annotations

import click

from usageledger.cli.env import Env
from usageledger.cli.errors import handled, report

#: Every command: name -> (module, attribute). Modules load only when their command runs, so
#: a quick command (``scan``, ``status``) does not pay for the server's imports.
COMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("usageledger.cli.serve", "serve"),
    "demo": ("usageledger.cli.serve", "demo"),
    "db": ("usageledger.cli.db", "db"),
    "users": ("usageledger.cli.accounts", "users"),
    "tokens": ("usageledger.cli.accounts", "tokens"),
    "attribute": ("usageledger.cli.attribute", "attribute"),
    "replay": ("usageledger.cli.ops", "replay"),
    "verify": ("usageledger.cli.ops", "verify"),
    "backfill": ("usageledger.cli.ops", "backfill"),
    "plans": ("usageledger.cli.ops", "plans"),
    "retention": ("usageledger.cli.ops", "retention"),
    "scan": ("usageledger.cli.tracker", "scan"),
    "report": ("usageledger.cli.tracker", "report"),
    "login": ("usageledger.cli.tracker", "login"),
    "push": ("usageledger.cli.tracker", "push"),
    "status": ("usageledger.cli.tracker", "status"),
    "statusline": ("usageledger.cli.statusline", "statusline"),
    "blocks": ("usageledger.cli.tracker", "blocks"),
    "limits": ("usageledger.cli.tracker", "limits"),
    "config": ("usageledger.cli.setup", "config_group"),
    "init": ("usageledger.cli.setup", "init"),
    "hook": ("usageledger.cli.setup", "hook"),
    "pricing": ("usageledger.cli.read", "pricing_group"),
    "prices": ("usageledger.cli.read", "prices_group"),
    "leaderboard": ("usageledger.cli.read", "leaderboard_group"),
}
#: Every command's one-line help, so that ``usageledger --help`` lists the commands without
#: importing them (that would load the server's libraries); a test checks each equals the
#: command's own short help.
SUMMARIES: dict[str, str] = {
    "attribute": "Attribute incidents in M1 log lines to vendor, application or unknown.",
    "backfill": "Change a device's buckets safely: plan, apply, roll back.",
    "blocks": "Usage in 5-hour windows: tokens, cost, burn rate and projection (scans first).",
    "config": "Read and change the config file (defaults below flags and environment variables).",
    "db": "Database schema commands.",
    "demo": "Seed a realistic synthetic history (devices, models, weekly rhythm) for a demo user.",
    "hook": "What `usageledger init` makes each assistant run: returns at once, scans detached.",
    "init": "Wire each installed assistant's own hooks to a quick, detached scan (and push).",
    "leaderboard": "Leaderboard snapshots (week, month, all time) of users who opted in.",
    "limits": "The vendors' own rate-limit windows as the assistants recorded them (scans first).",
    "login": "Save the server and this device's token for `usageledger push` (file mode 600).",
    "plans": "List and show backfill plans.",
    "pricing": "Prices of the server: the shipped table plus the ones you load.",
    "prices": "Prices from maintained sources, and the models that still have none.",
    "push": "Upload the half-hour buckets the server has not acknowledged (scans first).",
    "replay": "Rebuild usage_buckets and usage_daily from bucket_revisions.",
    "report": "Usage and cost per day, week, month, session, model or project (scans first).",
    "retention": "Delete data the ledger no longer needs (receipts, superseded revisions).",
    "scan": "Read what is new in the assistants' logs into the local ledger.",
    "serve": "Run the server.",
    "status": "The ledger's path, last scan and push, pending buckets and per-source health.",
    "statusline": "One status line for Claude Code's statusLine command (its JSON on stdin).",
    "tokens": "Issue, list and revoke API tokens.",
    "users": "Create and list users.",
    "verify": (
        "Compare usage_buckets and usage_daily with a fresh rebuild; exit 1 on any difference."
    ),
}


class LazyGroup(click.Group):
    """A group whose commands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Every command name, sorted."""
        return sorted({*COMMANDS, *self.commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """Import the command's module and return it."""
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            import importlib

            module, attribute = COMMANDS[cmd_name]
            command: click.Command = getattr(importlib.import_module(module), attribute)
            self.add_command(command, cmd_name)
        return self.commands.get(cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list of ``--help`` from :data:`SUMMARIES`, importing no command."""
        names = self.list_commands(ctx)
        if not names:
            return
        limit = formatter.width - 6 - max(len(name) for name in names)
        rows = []
        for name in names:
            if name in SUMMARIES:
                # A stand-in command shortens the line exactly as the real one's would be.
                stand_in = click.Command(name, help=SUMMARIES[name])
                rows.append((name, stand_in.get_short_help_str(limit)))
                continue
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(limit)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def invoke(self, ctx: click.Context) -> object:
        """Run the command; a failure that no command turned into a message (a database outage
        in a listing, a file that cannot be written) is one error line and its exit status
        (:mod:`usageledger.cli.errors`), never a traceback."""
        try:
            return super().invoke(ctx)
        except click.ClickException:
            raise  # usage errors: click prints them with the usage line, exit status 2
        except Exception as exc:
            if not handled(exc):
                raise
            report(exc)


@click.group(
    cls=LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(package_name="usageledger")
@click.pass_context
def main(ctx: click.Context) -> None:
    """An exact, de-duplicated ledger of AI coding-assistant token usage.

    \b
    Example:
      usageledger serve --demo        # run the server with a demo user on SQLite
    """
    env = ctx.ensure_object(Env)
    ctx.call_on_close(env.close)
