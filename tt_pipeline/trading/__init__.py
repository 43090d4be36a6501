"""The trading loop of the 1d timeframe (docs/trading.md): the champion's target portfolio after a session's
close (`target`), whole-share market-on-open orders and their pre-trade limits (`orders`), promotion of a
production model (`promotion`) and the run that reconciles, decides and submits (`session`).

Never imports Dagster or TensorFlow: the CLI and the Dagster assets both call these functions.
"""
