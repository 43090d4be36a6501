"""Quiet consoles: the third-party noise the platform is known to trigger, switched off at its source.

`quiet()` runs first in the `tt` CLI (unless `tt --verbose`) and in the Dagster code location
(tt_assets.definitions). Only what is named here is silenced; every other warning and log line still shows:

- TensorFlow's C++ INFO and WARNING lines (oneDNN, CPU instructions, CUDA drivers) and absl's "All log
  messages before absl::InitializeLog()": TensorFlow 2.21 writes them to file descriptor 2 while it is imported
  (tensortrade imports it) and no longer reads TF_CPP_MIN_LOG_LEVEL for them. So the first `import tensorflow`
  runs with descriptor 2 captured, and every captured line except those records is written back (errors,
  Python warnings). TF_CPP_MIN_LOG_LEVEL=2 is set too (unless already set), for the log that still reads it.
- tensortrade's SyntaxWarning "invalid escape sequence" (tensortrade/env/default/rewards.py), emitted when
  Python compiles the file; such warnings are attributed to the file's path, hence the path pattern.
- Dagster's BetaWarning, PreviewWarning and SupersessionWarning: the project uses those APIs knowingly.

Imports only dagster_shared's warning classes: no Dagster, TensorFlow or torch.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import os
import re
import sys
import tempfile
import warnings
from collections.abc import Iterator

from dagster_shared.utils.warnings import BetaWarning, PreviewWarning, SupersessionWarning

DAGSTER_NOTICES = (BetaWarning, PreviewWarning, SupersessionWarning)
TENSORTRADE_FILES = r".*[\\/]tensortrade[\\/]"  # compile-time warnings name the file, not the module
# absl's C++ log records: severity letter, MMDD, time, thread, file:line] (INFO, WARNING, ERROR, FATAL)
ABSL_RECORD = re.compile(r"[IWEF]\d{4} [\d:.]+ +\d+ [^ ]+:\d+\] ")
ABSL_PREAMBLE = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"

_verbose = False


def choose(verbose: bool) -> None:
    """The process's choice (`tt --verbose`), made before anything is imported: quiet now, or keep every
    message, also through later `quiet()` calls (the code location's, when a `tt` command loads it)."""
    global _verbose
    _verbose = verbose
    quiet()


def quiet() -> None:
    """Silence the known noise listed in the module docstring, unless the process chose verbose; idempotent.

    Call it before TensorFlow is imported and before the Dagster definitions that warn are built."""
    if _verbose:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    warnings.filterwarnings("ignore", category=SyntaxWarning, module=TENSORTRADE_FILES)
    for category in DAGSTER_NOTICES:
        warnings.filterwarnings("ignore", category=category)
    if "tensorflow" not in sys.modules and not any(isinstance(f, _QuietImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietImport("tensorflow"))


def without_info_records(text: str) -> str:
    """`text` (captured stderr) without absl's INFO/WARNING records, their continuation lines and its
    preamble line; ERROR/FATAL records and any other line are kept."""
    kept, dropping = [], False
    for line in text.splitlines(keepends=True):
        if line.rstrip("\n") == ABSL_PREAMBLE:
            dropping = True
        elif ABSL_RECORD.match(line):
            dropping = line[0] in "IW"
        if not dropping:
            kept.append(line)
    return "".join(kept)


@contextlib.contextmanager
def filtered_stderr() -> Iterator[None]:
    """File descriptor 2 (C++ writes included) goes to a temporary file inside the block; afterwards what it
    received is written back through `without_info_records`."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            sys.stderr.write(without_info_records(captured.read().decode(errors="replace")))
            sys.stderr.flush()


class _QuietImport(importlib.abc.MetaPathFinder):
    """Finds one top-level package with the other finders; its first import runs in `filtered_stderr`, after
    which this finder leaves sys.meta_path (a lookup alone, like torch's `find_spec("tensorflow")`, keeps it)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def find_spec(self, fullname, path, target=None):
        if fullname != self.name:
            return None
        for finder in sys.meta_path:
            spec = None if finder is self else finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None:
                    spec.loader = _FilteredLoader(spec.loader, self)
                return spec
        return None


class _FilteredLoader(importlib.abc.Loader):
    """Delegates to the package's own loader (which the module keeps) and executes it in `filtered_stderr`."""

    def __init__(self, loader: importlib.abc.Loader, finder: _QuietImport) -> None:
        self.loader, self.finder = loader, finder

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:
        module.__loader__ = module.__spec__.loader = self.loader
        with contextlib.suppress(ValueError):
            sys.meta_path.remove(self.finder)
        with filtered_stderr():
            self.loader.exec_module(module)
