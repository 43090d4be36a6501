"""The per-step record: the scalars one environment step produces, in the order the compiled step returns
them (`tt_rl.kernels.env_step`) and the episode log buffers them (`tt_rl.episode_log`, `tt_rl.log_writer`)."""

STEP_RECORD = (
    "bar",  # the bar the step moved to (t + 1)
    "reward",
    "sharpe_term",
    "drawdown_penalty",
    "turnover_penalty",
    "net_worth",
    "cash",
    "period_return",
    "drawdown",
    "turnover",
    "costs",
    "rebalanced",
)
COLUMN = {name: j for j, name in enumerate(STEP_RECORD)}  # field -> its column in a (K, 12) record matrix
