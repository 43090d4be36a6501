"""Walk-forward folds: which bars each fold trains on and which it is tested on.

The test period (bars from `first_test` on) is cut into `n_folds` consecutive test windows. A window
[test_start, test_end] is one evaluation episode: the policy decides at test_start (its observation ends
there) and earns the returns of bars test_start+1 .. test_end, so consecutive windows share an edge bar and
their returns stitch without gap or overlap. Fold k trains on bars [train_start, train_stop) with
train_stop = test_start - embargo: never on a bar at or after its test start minus the embargo, which is at
least the observation window, so no test observation reaches back into training bars.
Anchored folds all train from bar 0 (growing); rolling folds keep the first fold's length (sliding).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Literal

import numpy as np

Scheme = Literal["anchored", "rolling"]


@dataclass(frozen=True)
class Fold:
    """Bar positions of one fold: trains on [train_start, train_stop), tested over [test_start, test_end]."""

    index: int
    train_start: int
    train_stop: int
    test_start: int
    test_end: int

    @property
    def train_bars(self) -> int:
        return self.train_stop - self.train_start


def plan_folds(
    n_bars: int,
    first_test: int,
    n_folds: int,
    *,
    embargo: int,
    min_train: int,
    scheme: Scheme = "anchored",
) -> list[Fold]:
    """The folds over a panel of `n_bars` bars whose test period starts at bar `first_test`.

    `embargo` bars separate each fold's training from its test window; every fold trains on at least
    `min_train` bars. ValueError (naming the numbers) when the test period has fewer than 2 bars per fold or
    the first fold would train on fewer than `min_train` bars."""
    last = n_bars - 1
    if last - first_test < 2 * n_folds:
        raise ValueError(
            f"the test period has {max(last - first_test, 0)} bar(s) after bar {first_test}; "
            f"need at least {2 * n_folds} for {n_folds} fold(s)"
        )
    first_stop = first_test - embargo
    if first_stop < min_train:
        raise ValueError(
            f"the first fold would train on {max(first_stop, 0)} bar(s) (test from bar {first_test}, embargo "
            f"{embargo}); need at least {min_train}"
        )
    edges = np.linspace(first_test, last, n_folds + 1).astype(int).tolist()
    folds = []
    for k, (start, end) in enumerate(itertools.pairwise(edges)):
        stop = start - embargo
        folds.append(Fold(k, 0 if scheme == "anchored" else stop - first_stop, stop, start, end))
    return folds
