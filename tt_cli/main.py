"""The `tt` command. Subcommands live in their own modules and are imported only when invoked,
so `tt show` never pays for Dagster, TensorFlow or torch imports."""

from __future__ import annotations

import importlib

import click

# command name -> "module:attribute" of a click command
COMMANDS: dict[str, str] = {
    "db": "tt_cli.db:db",
    "show": "tt_cli.db:show",
    "watchlist": "tt_cli.db:watchlist",
    "ingest": "tt_cli.ingest:ingest",
    "train": "tt_cli.train:train",
    "demo": "tt_cli.demo:demo",
    "dev": "tt_cli.dev:dev",
    "workers": "tt_cli.workers:workers",
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def invoke(self, ctx: click.Context):
        """Settle quiet or --verbose before the subcommand's module (and TensorFlow, Dagster) is imported."""
        from tt_assets import quiet

        quiet.choose(verbose=ctx.params["verbose"])
        return super().invoke(ctx)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module, attr = target.split(":")
        return getattr(importlib.import_module(module), attr)


@click.group(cls=LazyGroup)
@click.option(
    "--verbose",
    is_flag=True,
    help="Show third-party warnings the platform filters (Dagster beta/preview, tensortrade's SyntaxWarning) "
    "and log records (ib_async's included) on the console; they always go to <data dir>/logs/tt.log.",
)
def cli(verbose: bool) -> None:
    """tt: research-to-production platform for RL trading agents."""
    from tt_cli.common import BadInput
    from tt_cli.logs import route_logs
    from tt_resources.config import SettingsError, settings

    try:
        settings()  # every command starts from checked settings: a bad variable is one line, exit 2
    except SettingsError as exc:
        raise BadInput(str(exc)) from None
    route_logs(verbose)
