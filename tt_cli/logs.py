"""Where log records go: every record of INFO and above from ib_async, and WARNING and above from everything
else (the platform's own `ingest ... failed` lines included), to the log file `<data dir>/logs/tt.log`; to the
console (stderr) only with `tt --verbose`. The console shows the command's own lines: a library's record of the
same failure (ib_async logs every IBKR error and every refused connection) never repeats them there."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

LOG_FILE = Path("logs") / "tt.log"
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
TAG = "_tt_route"  # marks the handlers installed here, so a second call replaces them


def route_logs(verbose: bool) -> Path | None:
    """Send log records to the log file (and, when `verbose`, to stderr); returns the file's path, or None
    when the data directory cannot be created (the command then reports that itself). Idempotent."""
    from tt_resources import config

    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, TAG, False)]:
        root.removeHandler(handler)
        handler.close()
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)] if verbose else []
    try:
        path = config.data_dir() / LOG_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(path, encoding="utf-8", delay=True))
    except OSError:
        path = None
    if not handlers:
        handlers.append(logging.NullHandler())  # nothing to the console: no last-resort printing either
    for handler in handlers:
        handler.setFormatter(logging.Formatter(FORMAT))
        setattr(handler, TAG, True)
        root.addHandler(handler)
    logging.getLogger("ib_async").setLevel(logging.INFO)
    return path
