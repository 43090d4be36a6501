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


class _LazyFileHandler(logging.FileHandler):
    """A FileHandler that creates the file (and its directory) at the first record: a command refused as bad
    input before any work writes nothing, not even an empty log."""

    def _open(self):
        try:
            Path(self.baseFilename).parent.mkdir(parents=True, exist_ok=True)
            return super()._open()
        except OSError:  # an unusable data directory: the command that needs it says so; records are dropped
            return None


def route_logs(verbose: bool) -> Path:
    """Send log records to the log file (and, when `verbose`, to stderr); returns the file's path. The file
    and its directory are created at the first record (a data directory that cannot be created is reported
    by the command that needs it). Idempotent."""
    from tt_resources import config

    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, TAG, False)]:
        root.removeHandler(handler)
        handler.close()
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)] if verbose else []
    path = config.data_path() / LOG_FILE
    handlers.append(_LazyFileHandler(path, encoding="utf-8", delay=True))
    for handler in handlers:
        handler.setFormatter(logging.Formatter(FORMAT))
        setattr(handler, TAG, True)
        root.addHandler(handler)
    logging.getLogger("ib_async").setLevel(logging.INFO)
    return path
