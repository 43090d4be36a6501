"""Quiet consoles: the third-party warnings the platform is known to trigger, filtered by category and origin.

`quiet()` runs first in the `tt` CLI (unless `tt --verbose`) and in the Dagster code location
(tt_assets.definitions). Only what is named here is silenced; every other warning, and everything written to
stderr (a native crash message included), still shows:

- tensortrade's SyntaxWarning "invalid escape sequence" (tensortrade/env/default/rewards.py), emitted when
  Python compiles the file; such warnings are attributed to the file's path, hence the path pattern.
- Dagster's BetaWarning, PreviewWarning and SupersessionWarning: the project uses those APIs knowingly.

Imports only dagster_shared's warning classes: no Dagster, tensortrade or torch.
"""

from __future__ import annotations

import warnings

from dagster_shared.utils.warnings import BetaWarning, PreviewWarning, SupersessionWarning

DAGSTER_NOTICES = (BetaWarning, PreviewWarning, SupersessionWarning)
TENSORTRADE_FILES = r".*[\\/]tensortrade[\\/]"  # compile-time warnings name the file, not the module

_verbose = False


def choose(verbose: bool) -> None:
    """The process's choice (`tt --verbose`), made before anything is imported: quiet now, or keep every
    warning, also through later `quiet()` calls (the code location's, when a `tt` command loads it)."""
    global _verbose
    _verbose = verbose
    quiet()


def quiet() -> None:
    """Filter the warnings listed in the module docstring, unless the process chose verbose; idempotent."""
    if _verbose:
        return
    warnings.filterwarnings("ignore", category=SyntaxWarning, module=TENSORTRADE_FILES)
    for category in DAGSTER_NOTICES:
        warnings.filterwarnings("ignore", category=category)
