"""Cross-sectional actor-critic for SB3 PPO: one scoring network shared by every asset.

The observation (tt_rl.kernels.observe) is W bars x N assets x F features, then the N current weights. Each
asset's input row is its own W*F features, its weight, the cross-sectional mean of the W*F features (the
market it trades in: what relative signals such as short-term reversal need) and a one-hot of its position
(N, so the network can still learn what is particular to one asset). One MLP (`net_arch`) maps every row to
an embedding, and one linear head maps every embedding to that asset's action mean, to which the cross-asset
term adds sum_{j,k} C[i, j, k] x[j, k]: a linear function of the `cross_features` (ppo.cross_features,
default the last return: a VAR(1) cross term, the lead-lag of Lo & MacKinlay 1990) of every asset at every
window bar, C (N, N, W * len(cross_features)) a parameter starting at 0 (what a signal in another asset
needs, a leader's return for its follower; docs/rl.md measures it). The value is a linear function of all
embeddings (and cross-asset terms). Sharing the scoring network across assets gives it N samples per step of
what a feature means, instead of learning the same rule N times from 1/N of the data.

Imports torch and SB3: only training and evaluation load this module.
"""

from __future__ import annotations

from collections.abc import Sequence

import gymnasium
import numpy as np
import torch
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn


class AssetRows(BaseFeaturesExtractor):
    """(B, W*N*F + N) observations -> (B, N * (net_arch[-1] + 1)) (without `cross_features`: N * net_arch[-1]):
    per asset, the embedding of one shared MLP over its row (2 W*F + 1 + N inputs, see module doc), then its
    cross-asset term over feature indices `cross_features` (into the F features of a bar)."""

    def __init__(
        self,
        observation_space: gymnasium.spaces.Box,
        n_assets: int,
        window: int,
        net_arch: list[int],
        cross_features: Sequence[int] = (),
    ) -> None:
        super().__init__(observation_space, n_assets * (net_arch[-1] + bool(cross_features)))
        self.n_assets, self.window = n_assets, window
        self.per_bar = (observation_space.shape[0] - n_assets) // n_assets  # W * F
        n_features = self.per_bar // window
        if any(not 0 <= k < n_features for k in cross_features):
            raise ValueError(
                f"cross-asset feature indices {list(cross_features)} outside 0..{n_features - 1}"
            )
        # the cross term's inputs in an asset's W*F row: each cross feature at every window bar
        columns = [w * n_features + k for w in range(window) for k in cross_features]
        self.register_buffer("cross_columns", torch.tensor(columns, dtype=torch.long))
        # C[i, j, k]: how cross input k of asset j moves asset i's action; a parameter starting at 0
        self.cross = nn.Parameter(torch.zeros(n_assets, n_assets, len(columns))) if columns else None
        layers: list[nn.Module] = []
        width = 2 * self.per_bar + 1 + n_assets
        for size in net_arch:
            layers += [nn.Linear(width, size), nn.Tanh()]
            width = size
        self.shared = nn.Sequential(*layers)
        self.register_buffer("identity", torch.eye(n_assets))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        batch, n = obs.shape[0], self.n_assets
        bars = obs[:, :-n].reshape(batch, self.window, n, self.per_bar // self.window)
        own = bars.permute(0, 2, 1, 3).reshape(batch, n, self.per_bar)
        market = own.mean(dim=1, keepdim=True).expand(-1, n, -1)
        weights = obs[:, -n:].unsqueeze(-1)
        rows = self.shared(torch.cat([own, weights, market, self.identity.expand(batch, -1, -1)], dim=-1))
        if self.cross is not None:
            cross = torch.einsum("ijk,bjk->bi", self.cross, own[..., self.cross_columns])
            rows = torch.cat([rows, cross.unsqueeze(-1)], dim=-1)
        return rows.reshape(batch, -1)


class AssetHead(nn.Module):
    """(B, N * H) embeddings (with a cross-asset term: N * (H + 1), each asset's last column its term) -> (B, N)
    action means through one Linear(H, 1) shared by the assets, plus the cross-asset terms."""

    def __init__(self, n_assets: int, width: int, cross_asset: bool = False) -> None:
        super().__init__()
        self.n_assets, self.cross_asset = n_assets, cross_asset
        self.linear = nn.Linear(width - cross_asset, 1)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        rows = latent.reshape(latent.shape[0], self.n_assets, -1)
        if not self.cross_asset:
            return self.linear(rows).squeeze(-1)
        return self.linear(rows[..., :-1]).squeeze(-1) + rows[..., -1]


class CrossSectionalPolicy(ActorCriticPolicy):
    """ActorCriticPolicy whose features are `AssetRows` and whose action head is `AssetHead` (see module doc).
    `net_arch` is the shared per-asset MLP, `window` the observation's bars, `cross_features` the indices of
    the features in the cross-asset linear term (empty: none; `cross_asset` True, the saved form of models
    trained before 2026-12-08: every feature); the policy and value heads add no hidden layers."""

    def __init__(
        self,
        observation_space,
        action_space,
        lr_schedule,
        *,
        net_arch: list[int],
        window: int,
        cross_features: Sequence[int] = (),
        cross_asset: bool = False,
        **kwargs,
    ):
        if cross_asset:  # as saved by models trained before cross_features: the term over every feature
            n_assets = int(np.prod(action_space.shape))
            cross_features = range((observation_space.shape[0] - n_assets) // n_assets // window)
        super().__init__(
            observation_space,
            action_space,
            lr_schedule,
            net_arch=[],
            features_extractor_class=AssetRows,
            features_extractor_kwargs={
                "n_assets": int(np.prod(action_space.shape)),
                "window": window,
                "net_arch": list(net_arch),
                "cross_features": tuple(cross_features),
            },
            **kwargs,
        )

    def _build(self, lr_schedule) -> None:
        super()._build(lr_schedule)
        n_assets = int(np.prod(self.action_space.shape))
        cross_asset = self.features_extractor.cross is not None
        self.action_net = AssetHead(n_assets, self.features_dim // n_assets, cross_asset)
        if self.ortho_init:
            self.action_net.apply(lambda module: self.init_weights(module, gain=0.01))
        self.optimizer = self.optimizer_class(self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)
