"""The version check each fence module runs at import.

A fence module (tt_resources/ib_fence.py, tt_assets/dagster_fence.py, tt_assets/celery_fence.py,
tt_rl/tensortrade_shell.py) holds every use of one dependency's private API or package layout. It was checked against one release series of that dependency; another
series may have moved what it relies on, so importing the fence fails with one line naming the file to
re-check (its contract tests are in tests/test_fences.py).
"""

from __future__ import annotations

from importlib import metadata


class UncheckedVersion(RuntimeError):
    """The installed dependency is not the release series its fence was checked against."""


def require_checked(distribution: str, series: str, fence: str, installed: str | None = None) -> None:
    """Raise UncheckedVersion unless `distribution` (its `installed` version, default: the installed
    distribution's) is in `series` ("2.0": 2.0 and 2.0.x); `fence` is the fence file's path in the repository."""
    installed = installed or metadata.version(distribution)
    if installed != series and not installed.startswith(f"{series}."):
        raise UncheckedVersion(
            f"{distribution} {installed} is not the version {fence} was checked against ({series}.x); "
            "re-check that file"
        )
