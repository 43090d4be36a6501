"""TensorTrade's environment shell without its TensorFlow agents: the one place that imports tensortrade.

tensortrade 1.0.4's package `__init__` imports `tensortrade.agents`, whose DQN/A2C agents import TensorFlow
(seconds of CPU and hundreds of MB per process; docs/DESIGN.md, "TensorTrade without TensorFlow"). The platform
trains with Stable-Baselines3 and uses only the env shell (`TradingEnv`, the component interfaces) and one
renderer. So `tensortrade.agents` is registered as a placeholder module before tensortrade is imported: the
package loads without TensorFlow, and code that reaches for an agent gets an ImportError naming this file
instead of a TensorFlow import.

Relies on tensortrade's package layout, hence the exact version check: an upgrade fails here at import, naming
this file to re-check.
"""

from __future__ import annotations

import sys
import types

from tt_resources.fences import require_checked

require_checked("tensortrade", "1.0", "tt_rl/tensortrade_shell.py")


def _no_agents(name: str):
    if name.startswith("__"):  # module protocol lookups (__file__, __path__) find nothing, as usual
        raise AttributeError(name)
    raise ImportError(
        f"tensortrade.agents.{name} is not loaded: tt_rl/tensortrade_shell.py keeps TensorFlow out of the process"
    )


if "tensortrade" not in sys.modules:
    _placeholder = types.ModuleType("tensortrade.agents", "placeholder: see tt_rl.tensortrade_shell")
    _placeholder.__getattr__ = _no_agents  # module-level __getattr__ (PEP 562)
    sys.modules["tensortrade.agents"] = _placeholder

from tensortrade.env.default.renderers import EmptyRenderer  # noqa: E402
from tensortrade.env.generic import (  # noqa: E402
    ActionScheme,
    Informer,
    Observer,
    RewardScheme,
    Stopper,
    TradingEnv,
)

__all__ = ["ActionScheme", "EmptyRenderer", "Informer", "Observer", "RewardScheme", "Stopper", "TradingEnv"]
