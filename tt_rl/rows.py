"""Per-step output arrays without a per-step allocation: rows carved from preallocated blocks."""

from __future__ import annotations

import numpy as np

BLOCK_ROWS = 32  # steps per block: one allocation per 32 steps


class RowBlocks:
    """`parts` arrays of `width` values per step, as rows of (parts, BLOCK_ROWS, width) blocks.

    `claim()` -> (block, row): the step writes `block[:, row]` (compiled code, no views made), then hands out
    `views[p][row]`, views made once per block. A row is never written again once handed out (a full block
    is replaced, not reused), so callers may keep the arrays; keeping one keeps its block alive."""

    def __init__(self, parts: int, width: int, dtype: type = np.float64, readonly: bool = True) -> None:
        self._shape = (parts, BLOCK_ROWS, width)
        self._dtype = dtype
        self._readonly = readonly
        self.row = BLOCK_ROWS - 1
        self.block = np.empty(0)
        self.views: list[list[np.ndarray]] = []

    def claim(self) -> tuple[np.ndarray, int]:
        """The block and row index the next step writes (a new block after the last row)."""
        row = self.row + 1
        if row == BLOCK_ROWS:
            self.block = np.empty(self._shape, dtype=self._dtype)
            handed = self.block.view()
            handed.flags.writeable = not self._readonly
            self.views = [list(part) for part in handed]
            row = 0
        self.row = row
        return self.block, row
