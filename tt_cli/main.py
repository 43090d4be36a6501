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
    "trade": "tt_cli.trade:trade",
    "positions": "tt_cli.trade:positions",
    "promote": "tt_cli.trade:promote",
    "halt": "tt_cli.trade:halt",
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def invoke(self, ctx: click.Context):
        """Settle quiet or --verbose before the subcommand's module (and TensorFlow, Dagster) is imported;
        the errors _one_line knows become one line."""
        from tt_assets import quiet

        quiet.choose(verbose=ctx.params["verbose"])
        try:
            return super().invoke(ctx)
        except Exception as exc:
            short = _one_line(exc)
            if short is exc:
                raise
            raise short from None

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module, attr = target.split(":")
        return getattr(importlib.import_module(module), attr)


def _one_line(exc: Exception) -> Exception:
    """A one-line click error for the faults any command may meet: Dagster instance settings that do not
    work (exit 2, like any bad setting) and a database fault no step caught, e.g. mid-migration (exit 1);
    `exc` itself otherwise."""
    from tt_cli.common import BadInput
    from tt_cli.pipeline import StepFailed
    from tt_resources.dagster_storage import DagsterStorageError
    from tt_resources.db.faults import database_fault

    if isinstance(exc, DagsterStorageError):
        return BadInput(str(exc))
    cause = database_fault(exc)
    return StepFailed(cause) if cause is not None else exc


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
    from tt_resources.config import SettingsError, check_directories

    try:  # every command starts from checked settings: a bad variable is one line, exit 2
        notes = check_directories()
    except SettingsError as exc:
        raise BadInput(str(exc)) from None
    # a relative TT_DATA_DIR / DAGSTER_HOME, resolved once for this process and its children
    for note in notes:
        click.echo(note, err=True)
    route_logs(verbose)
