"""`tt dev` (= `make dev`): `dagster dev` on the project's persistent instance, quiet, and stoppable.

- Instance: DAGSTER_HOME is prepared as `tt demo` prepares it (tt_assets.launch.ensure_dagster_home: the
  project's dagster.yaml copied there), so the UI shows the demo's runs. Dagster warns that a dagster.yaml in
  the working directory "will not be used" when it is not DAGSTER_HOME itself; the services therefore run in
  DAGSTER_HOME (TT_DATA_DIR is made absolute first, so a relative one keeps its meaning).
- Quiet: `dagster dev` runs in this process, after `tt`'s quiet.choose(), so its own SupersessionWarning is
  filtered like the code location's notices; `tt --verbose dev` shows them.
- Stoppable: Dagster maps SIGTERM to whatever handles SIGINT. A process started in the background by a
  non-interactive shell (`make dev &`) inherits SIGINT ignored, which made both signals no-ops; SIGINT gets
  Python's default handler back here, so Ctrl-C and SIGTERM shut the webserver, daemon and code server down.
"""

from __future__ import annotations

import os
import signal

import click


@click.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.option(
    "--host", "-h", default="127.0.0.1", show_default=True, help="Address the webserver listens on."
)
@click.option("--port", "-p", default="3000", show_default=True, help="Port of the webserver.")
@click.argument("dagster_args", nargs=-1, type=click.UNPROCESSED)
def dev(host: str, port: str, dagster_args: tuple[str, ...]) -> None:
    """Dagster's UI, daemon and code server on the platform's instance (extra arguments go to `dagster dev`)."""
    from tt_assets.dagster_fence import run_dagster_cli
    from tt_assets.launch import ensure_dagster_home
    from tt_resources.config import PROJECT_ROOT, data_dir

    os.environ["TT_DATA_DIR"] = str(data_dir().resolve())
    home = ensure_dagster_home()
    os.chdir(home)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    workspace = str(PROJECT_ROOT / "workspace.yaml")
    run_dagster_cli(["dev", "-w", workspace, "-h", host, "-p", port, *dagster_args])
