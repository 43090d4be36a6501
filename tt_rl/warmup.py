"""Loads, once, what every training or scoring process would otherwise load again on its own.

Imported by the forkserver that forks a training run's step processes (tt_assets.launch, `step_processes`):
each (fold, seed) step then starts with SB3, torch, the environment and the pipeline's model steps in memory
instead of spending ~10 s of CPU importing them. Building one optimizer loads torch's compiler stack, which
torch imports on the first optimizer a process builds (2.7 s here; every PPO model builds one).

Imports torch and SB3: only the training forkserver imports this module.
"""

from __future__ import annotations

import stable_baselines3  # noqa: F401
import torch

import tt_pipeline.models  # noqa: F401
import tt_rl.env  # noqa: F401

torch.optim.Adam([torch.zeros(1, requires_grad=True)])
