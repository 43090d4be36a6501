"""The pipeline's steps as plain functions, called alike by the Dagster assets, the `tt` CLI and `tt demo`.

- market.refresh_partitions: fetch the missing tail, assess the bars, bring features to the last bar;
- datasets.build_dataset: quality gate + panel + tt_dataset row (identity: content + split + features);
- models.train_walk_forward / models.evaluate_model: walk-forward folds x seeds on the exact registered
  dataset (per-job functions plan_walk_forward, train_fold, register_walk_forward, score_fold_model,
  score_fold_policies and gather_evaluation);
- retraining.retrain_request: whether to retrain, once per cause.

Imports no Dagster; heavy libraries (torch, SB3, tensortrade) load only inside training and evaluation.
"""
