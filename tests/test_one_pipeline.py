"""One pipeline: `tt ingest` / `tt train` leave the same tables and exit codes with or without --via-dagster
(which records the chain's runs and lineage in the instance), and range runs report each partition on its
own (checks, features, failures with their reasons)."""

from __future__ import annotations

import re
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from tests.dagster_instance import instance_for_test
from tests.test_ingest_cli import summary_rows
from tests.test_quiet_console import results_tables
from tt_assets.definitions import defs
from tt_assets.market import FEATURES, RAW_BARS, market_data
from tt_assets.partitions import range_tags, symbol_ranges
from tt_assets.resources import DatabaseResource, MarketDataResource, WatchlistResource
from tt_pipeline.quality import RAW_BARS_RULES
from tt_pipeline.trading.promotion import verdict_of
from tt_resources.db import registry
from tt_resources.db.engine import create_engine
from tt_resources.sources.synthetic import SyntheticSource
from tt_resources.terms import ORACLE, POLICY_LABELS, POLICY_NAMES
from tt_resources.watchlist import Listing

SYMBOLS = ["AAA", "BBB", "CCC"]
START, END = "2025-01-01", "2025-09-30"
RL_CONFIG = (  # a learning rate other than the default, to find in the Dagster run's config
    '{"ppo": {"n_steps": 64, "batch_size": 32, "n_epochs": 1, "learning_rate": 0.0005}, '
    '"env": {"max_episode_steps": 50}, "eval": {"n_folds": 2, "seeds": 1}}'
)
# columns that differ between two runs of the same pipeline by construction (ids, wall-clock times, paths)
VOLATILE = {
    "ingested_at",
    "computed_at",
    "created_at",
    "path",
    "eval_id",
    "model_id",
    "fold_model_id",
    "run_id",
    "episode_id",
}


def write_csv(directory, symbols, timeframes=("1d", "1h", "15m"), start=START, end=END) -> None:
    """CSV files `<SYMBOL>_<tf>.csv` with the synthetic market's bars over [start, end)."""
    source = SyntheticSource(seed=3)
    for symbol in symbols:
        for timeframe in timeframes:
            bars = source.fetch(
                Listing(symbol), timeframe, pd.Timestamp(start, tz="UTC"), pd.Timestamp(end, tz="UTC")
            )
            bars.to_csv(directory / f"{symbol}_{timeframe}.csv", index=False)


def environment(tmp_path, name: str, **extra: str) -> dict[str, str]:
    """A separate database, data directory and Dagster home under tmp_path/name."""
    home = tmp_path / name
    home.mkdir(exist_ok=True)
    return {
        "DATABASE_URL": f"sqlite:///{home / 'tt.sqlite'}",
        "TT_DATA_DIR": str(home),
        "DAGSTER_HOME": str(home / "dagster_home"),
        "COLUMNS": "200",
        **extra,
    }


def tt(env: dict[str, str], *args: str):
    from tt_cli.main import cli

    return CliRunner().invoke(cli, list(args), env=env)


ORDER = {
    "tt_prices": ["symbol", "timeframe", "ts"],
    "tt_features": ["symbol", "timeframe", "ts"],
    "tt_dataset": ["dataset_version"],
    "tt_eval": ["policy", "fold", "seed"],
}


def table(url: str, name: str) -> pd.DataFrame:
    """A table's rows (typed by the schema) without its volatile columns, in a stable order."""
    from tt_resources.db.schema import TABLES

    engine = create_engine(url)
    with engine.connect() as conn:
        frame = pd.DataFrame(conn.execute(sa.select(TABLES[name])).mappings().all())
    engine.dispose()
    frame = frame.drop(columns=[c for c in frame.columns if c in VOLATILE])
    return frame.sort_values(ORDER[name]).reset_index(drop=True)


@pytest.mark.slow
@pytest.mark.parametrize("source", ["synthetic", "csv"])
def test_direct_and_via_dagster_leave_the_same_tables_and_exit_codes(tmp_path, source):
    write_csv(tmp_path, SYMBOLS)
    (tmp_path / "rl.json").write_text(RL_CONFIG)
    envs = {
        path: environment(tmp_path, path, TT_CSV_DIR=str(tmp_path), TT_SOURCE=source)
        for path in ("direct", "dagster")
    }
    outcomes, printed = {}, {}
    for path, env in envs.items():
        flag = ["--via-dagster"] if path == "dagster" else []
        window = ["--symbols", ",".join(SYMBOLS), "--start", START, "--end", END, "--source", source]
        ingest = tt(env, "ingest", *window, *flag)
        assert ingest.exit_code == 0, ingest.output
        train = tt(env, "train", *window, "--steps", "128", "--config", str(tmp_path / "rl.json"), *flag)
        assert train.exit_code == 0, train.output
        outcomes[path] = (ingest.exit_code, train.exit_code)
        printed[path] = train.output
        report = Path(train.output.split("tear sheet: ")[1].split()[0])  # the evaluation's HTML tear sheet
        assert report.parent == Path(env["TT_DATA_DIR"]) / "reports" and report.is_file(), train.output
    assert outcomes["direct"] == outcomes["dagster"]

    direct, dagster = (envs[p]["DATABASE_URL"] for p in ("direct", "dagster"))
    for name in ("tt_prices", "tt_features", "tt_dataset", "tt_eval"):
        left, right = table(direct, name), table(dagster, name)
        assert len(left) > 0, name
        pd.testing.assert_frame_equal(left, right, check_exact=False, rtol=1e-9, obj=name)
    [dataset] = table(direct, "tt_dataset").to_dict("records")
    assert dataset["start_ts"] >= pd.Timestamp(START, tz="UTC")  # --start/--end honoured
    assert dataset["end_ts"] < pd.Timestamp(END, tz="UTC")
    assert sorted(dataset["symbols"]) == SYMBOLS
    features, prices = table(direct, "tt_features"), table(direct, "tt_prices")
    assert len(features) == len(prices)  # every stored bar has its feature row
    for path, env in envs.items():
        assert_production_model(env["DATABASE_URL"], printed[path])
    assert_lineage_recorded(envs["dagster"], printed["dagster"])


def assert_production_model(url: str, output: str) -> None:
    """`tt train` trained the walk-forward model's production model (tt_model row with production_of = the
    walk-forward model, on its dataset) and printed its id with the answer `tt promote` gives."""
    [walk_forward_id] = re.findall(r"^model (\S+)$", output, re.MULTILINE)
    [(production_id, answer)] = re.findall(
        r"^production model (\S+) \(whole history\): `tt promote \1` (accepts|refuses) it ",
        output,
        re.MULTILINE,
    )
    engine = create_engine(url)
    try:
        production, walk_forward = (registry.model(engine, m) for m in (production_id, walk_forward_id))
        assert production["production_of"] == walk_forward_id, output
        assert production["dataset_version"] == walk_forward["dataset_version"]
        assert answer == ("accepts" if verdict_of(engine, walk_forward_id)[1] else "refuses")
    finally:
        engine.dispose()


def assert_lineage_recorded(env: dict[str, str], output: str) -> None:
    """`tt train --via-dagster` ran the whole chain as Dagster runs recorded in the instance, saved its model
    and printed the agent and every baseline by their labels (no planted oracle: only the demo scores one);
    each training job logged its progress in its step log, and the command's progress bar followed it."""
    policies = results_tables(output, "1d out-of-sample: test ")["policy"]
    assert policies == [POLICY_LABELS[p] for p in POLICY_NAMES if p != ORACLE]
    assert re.search(r"^evaluating +━+ 256/256 steps ", output, re.M), output  # 2 folds x 1 seed x 128
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        [retrain] = instance.get_runs(dg.RunsFilter(job_name="retrain_job"))
        logged = [e.user_message for e in instance.all_logs(retrain.run_id) if not e.is_dagster_event]
        for fold in (0, 1):  # a line per 10 % of each job's 128 steps (a rollout is 64): 0, 64, 128
            job = f"job {fold + 1}/2 (fold {fold}, seed 0): "
            assert [m[len(job) :].split(" PPO")[0] for m in logged if m.startswith(job)] == [
                "0/128",
                "64/128",
                "128/128",
            ], logged
        jobs = [run.job_name for run in instance.get_runs()]
        for asset in ("raw_bars", "features", "training_dataset", "ppo_model", "evaluation"):
            assert instance.get_latest_materialization_event(dg.AssetKey(asset)) is not None, asset
        # the RL config (--config FILE with --steps) travels as the run's config, not as a file
        ppo = retrain.run_config["ops"]["ppo_model"]["config"]["ppo"]
        assert (ppo["learning_rate"], ppo["total_timesteps"]) == (0.0005, 128)
    assert not (Path(env["TT_DATA_DIR"]) / "configs").exists()
    assert set(jobs) == {"market_data_job", "training_job", "retrain_job"}
    assert (jobs.count("training_job"), jobs.count("retrain_job")) == (1, 1)
    assert list((Path(env["TT_DATA_DIR"]) / "models" / "1d").glob("*/model.zip"))


def test_features_reach_the_last_bar_when_the_direct_path_extends_dagster_bars(tmp_path):
    env = environment(tmp_path, "db")
    symbols = ["--symbols", ",".join(SYMBOLS), "--timeframe", "1d", "--start", START]
    assert tt(env, "ingest", *symbols, "--end", "2025-06-30", "--via-dagster").exit_code == 0
    later = tt(env, "ingest", *symbols, "--end", END)
    assert later.exit_code == 0, later.output

    engine = create_engine(env["DATABASE_URL"])
    last = "SELECT symbol, max(ts) AS last FROM {} GROUP BY symbol ORDER BY symbol"
    with engine.connect() as conn:
        bars = conn.execute(sa.text(last.format("tt_prices"))).all()
        features = conn.execute(sa.text(last.format("tt_features"))).all()
    assert pd.Timestamp(bars[0][1]) > pd.Timestamp("2025-09-01")
    assert features == bars


def test_panel_refuses_to_fill_features_missing_after_the_warm_up(sqlite_engine):
    from tt_pipeline.market import refresh_partitions
    from tt_rl.panel import build_panel

    refresh_partitions(
        sqlite_engine, SyntheticSource(), [Listing(s) for s in SYMBOLS], "1d", start=START, end=END
    )
    with sqlite_engine.begin() as conn:
        dropped = conn.execute(
            sa.text("DELETE FROM tt_features WHERE symbol = 'BBB' AND ts >= :ts"),
            {"ts": "2025-07-01 00:00:00"},
        ).rowcount
    assert dropped > 50
    with pytest.raises(
        ValueError, match=rf"1d features of BBB missing for {dropped} bar\(s\) from 2025-07-01"
    ):
        build_panel(sqlite_engine, "1d", SYMBOLS)


def test_universe_selection_sees_the_training_span_only(sqlite_engine, tmp_path):
    """A defect that appears only in the test period does not decide which symbols are traded (that would
    select on the future); it is reported. The same defect before the split leaves the symbol out."""
    from tt_pipeline.datasets import build_dataset
    from tt_pipeline.market import refresh_partitions

    refresh_partitions(
        sqlite_engine, SyntheticSource(), [Listing(s) for s in SYMBOLS], "1d", start=START, end=END
    )

    def break_bar(symbol: str, ts: str) -> None:  # high below low: an ohlc_sanity failure
        from tt_resources.db.schema import prices

        at = pd.Timestamp(ts, tz="UTC").to_pydatetime()
        with sqlite_engine.begin() as conn:
            broken = conn.execute(
                sa.update(prices)
                .where(prices.c.symbol == symbol, prices.c.ts == at)
                .values(high=prices.c.low * 0.5)
            )
            assert broken.rowcount == 1

    break_bar("CCC", "2025-09-02 13:30:00")  # in the test period (the last 30 % of the window)
    dataset = build_dataset(sqlite_engine, "1d", SYMBOLS, test_fraction=0.3, data_dir=tmp_path)
    assert dataset.panel.symbols == tuple(SYMBOLS) and dataset.excluded == {}
    assert dataset.row["split_ts"] < pd.Timestamp("2025-09-02 13:30", tz="UTC")
    assert dataset.test_defects == {"CCC": "ohlc_sanity: 1 bar(s) with bad prices or volume"}

    break_bar("BBB", "2025-03-03 14:30:00")  # in the training period
    dataset = build_dataset(sqlite_engine, "1d", SYMBOLS, test_fraction=0.3, data_dir=tmp_path)
    assert dataset.panel.symbols == ("AAA", "CCC")
    assert dataset.excluded == {"BBB": "ohlc_sanity: 1 bar(s) with bad prices or volume"}


def test_a_symbol_that_ends_early_is_named_with_where_it_ends(sqlite_engine, tmp_path):
    from tt_pipeline.datasets import build_dataset
    from tt_pipeline.market import refresh_partitions
    from tt_resources.db.schema import features, prices

    refresh_partitions(
        sqlite_engine, SyntheticSource(), [Listing(s) for s in SYMBOLS], "1d", start=START, end=END
    )
    with sqlite_engine.begin() as conn:  # BBB's history ends in June (a delisting, or a shorter file)
        for table in (prices, features):
            conn.execute(
                sa.delete(table).where(
                    table.c.symbol == "BBB",
                    table.c.ts >= pd.Timestamp("2025-07-01", tz="UTC").to_pydatetime(),
                )
            )
    dropped = build_dataset(sqlite_engine, "1d", SYMBOLS, test_fraction=0.3, data_dir=tmp_path)
    assert dropped.panel.symbols == ("AAA", "CCC")
    assert dropped.panel.index[-1] >= pd.Timestamp("2025-09-26", tz="UTC")  # the others keep their history
    [reason] = dropped.excluded.values()
    assert reason.startswith("ends 2025-06-30 (") and reason.endswith(
        "bars before most) (span policy drop_short)"
    )

    common = build_dataset(
        sqlite_engine, "1d", SYMBOLS, test_fraction=0.3, data_dir=tmp_path, span_policy="common_span"
    )
    assert common.panel.symbols == tuple(SYMBOLS) and common.excluded == {}
    assert common.panel.index[-1] == pd.Timestamp("2025-06-30 13:30", tz="UTC")
    assert common.span_note.startswith("common span 2025-") and "BBB ends 2025-06-30" in common.span_note


@pytest.mark.parametrize("via_dagster", [False, True])
def test_off_grid_bars_fail_the_partition_and_the_dataset_gate(tmp_path, via_dagster):
    write_csv(tmp_path, ["BBB"], timeframes=("1d",))
    bars = SyntheticSource(seed=3).fetch(
        Listing("AAA"), "1d", pd.Timestamp(START, tz="UTC"), pd.Timestamp(END, tz="UTC")
    )
    late = bars["ts"] + pd.Timedelta(hours=8, minutes=30)  # 18:00 New York: after the close, no session's
    bars.assign(ts=late).to_csv(tmp_path / "AAA_1d.csv", index=False)
    env = environment(tmp_path, "db", TT_CSV_DIR=str(tmp_path))
    flag = ["--via-dagster"] if via_dagster else []
    window = ["--symbols", "AAA,BBB", "--start", START, "--end", END, "--source", "csv"]

    ingest = tt(env, "ingest", *window, "--timeframe", "1d", *flag)
    assert ingest.exit_code == 1, ingest.output
    assert f"failed AAA 1d: {tmp_path / 'AAA_1d.csv'}: line 2: a daily bar stamped " in ingest.output
    assert "failed BBB" not in ingest.output

    train = tt(env, "train", *window, "--steps", "64", *flag)
    assert train.exit_code == 1, train.output
    assert "1 of 2 symbol(s) pass the bar-quality rules, need at least 2" in train.output
    assert "(left out: AAA: " in train.output


def test_months_is_honoured_alike_on_both_paths(tmp_path):
    write_csv(tmp_path, ["AAA", "BBB"], timeframes=("1d",))  # bars of 2025 only
    results = []
    for path in ("direct", "dagster"):
        env = environment(tmp_path, path, TT_CSV_DIR=str(tmp_path))
        flag = ["--via-dagster"] if path == "dagster" else []
        results.append(tt(env, "train", "--symbols", "AAA,BBB", "--months", "1", "--source", "csv", *flag))
    assert [r.exit_code for r in results] == [1, 1]
    for result in results:  # nothing in the last month: no dataset, never the whole stored history
        assert "0 of 2 symbol(s) pass the bar-quality rules" in result.output, result.output


def _resources(engine, source="synthetic") -> dict:
    return {
        "database": DatabaseResource(url=engine.url.render_as_string(hide_password=False)),
        "market_data": MarketDataResource(source=source),
        "watchlist": WatchlistResource(),
    }


def _range_run(instance, engine, symbols, *, assets=None, config=None):
    [key_range] = symbol_ranges(symbols, "1d")
    return dg.materialize(
        [market_data],
        instance=instance,
        resources=_resources(engine),
        tags=range_tags(key_range),
        run_config={"ops": {"market_data": {"config": config or {"start": START, "end": END}}}},
        selection=assets,
        raise_on_error=False,
    )


def test_range_run_records_check_results_per_partition(sqlite_engine):
    with instance_for_test() as instance:
        instance.add_dynamic_partitions("symbol", SYMBOLS)
        assert _range_run(instance, sqlite_engine, SYMBOLS).success
        keys = [f"{s}|1d" for s in SYMBOLS]
        check_keys = [dg.AssetCheckKey(RAW_BARS, rule) for rule in RAW_BARS_RULES]
        infos = instance.event_log_storage.get_asset_check_partition_info(check_keys, partition_keys=keys)
        status = {(i.check_key.name, i.partition_key): i.latest_execution_status.value for i in infos}
        assert status == {(rule, key): "SUCCEEDED" for rule in RAW_BARS_RULES for key in keys}
        assert all(i.is_current for i in infos)  # each targets its own partition's materialisation


def test_automation_requests_features_after_a_raw_bars_range_run(sqlite_engine):
    with instance_for_test() as instance:
        instance.add_dynamic_partitions("symbol", SYMBOLS[:2])
        first_tick = dg.evaluate_automation_conditions(defs=defs, instance=instance)
        result = _range_run(instance, sqlite_engine, SYMBOLS[:2], assets=[RAW_BARS])
        assert result.success
        assert instance.get_latest_materialization_event(FEATURES) is None
        tick = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=first_tick.cursor)
        requested = tick.get_requested_partitions(FEATURES)
        assert sorted(requested) == ["AAA|1d", "BBB|1d"]


@pytest.mark.parametrize("via_dagster", [False, True])
def test_one_bad_file_fails_only_its_partition_with_the_reason(tmp_path, via_dagster):
    symbols = ["BRK.B", "BF.B", "AAPL"]
    write_csv(tmp_path, symbols, timeframes=("1d",))
    bad = pd.read_csv(tmp_path / "AAPL_1d.csv")
    bad.loc[99, "high"] = bad.loc[99, "low"] * 0.5  # data row 100, line 101 of the file: high < low
    bad.to_csv(tmp_path / "AAPL_1d.csv", index=False)
    env = environment(tmp_path, "db", TT_CSV_DIR=str(tmp_path))
    flag = ["--via-dagster"] if via_dagster else []
    args = ["--symbols", ",".join(symbols), "--timeframe", "1d", "--start", START, "--end", END]
    result = tt(env, "ingest", *args, "--source", "csv", *flag)

    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and "STEP_FAILURE" not in result.output
    failed = [line for line in result.output.splitlines() if line.startswith("failed")]
    assert len(failed) == 1 and failed[0].startswith("failed AAPL 1d:")
    assert summary_rows(result.output)["1d"] == [
        "3",
        "0",
        "2",
        "1",
        f"{2 * 185:,}",
        "3",
        "0",
        "0",
        "0",
        f"{2 * 185:,}",  # bars stored: AAPL's file is refused whole
    ]
    assert "AAPL_1d.csv: line 101: high < low" in result.output
    engine = create_engine(env["DATABASE_URL"])
    count = "SELECT symbol, count(*) FROM {} GROUP BY symbol ORDER BY symbol"
    with engine.connect() as conn:
        bars = conn.execute(sa.text(count.format("tt_prices"))).all()
        features = conn.execute(sa.text(count.format("tt_features"))).all()
    assert [s for s, _ in bars] == ["BF.B", "BRK.B"] and features == bars
    if via_dagster:
        with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
            for asset in (RAW_BARS, FEATURES):
                materialized = instance.get_materialized_partitions(asset)
                assert sorted(materialized) == ["BF.B|1d", "BRK.B|1d"], asset


def test_via_dagster_registers_symbols_in_the_order_given(tmp_path):
    env = environment(tmp_path, "db")
    order = ["CCC", "AAA", "BBB"]
    result = tt(
        env,
        "ingest",
        "--symbols",
        ",".join(order),
        "--timeframe",
        "1d",
        "--start",
        START,
        "--end",
        END,
        "--via-dagster",
    )
    assert result.exit_code == 0, result.output
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        assert list(instance.get_dynamic_partitions("symbol")) == order


def test_a_window_without_stored_bars_is_named_alike_on_both_paths(tmp_path):
    write_csv(tmp_path, ["AAA", "BBB"], timeframes=("1d",))  # bars of 2025 only
    for path in ("direct", "dagster"):
        env = environment(tmp_path, path, TT_CSV_DIR=str(tmp_path))
        flag = ["--via-dagster"] if path == "dagster" else []
        stored = tt(
            env, "ingest", "--symbols", "AAA,BBB", "--source", "csv", "--timeframe", "1d", "--start", START
        )
        assert stored.exit_code == 0, stored.output
        window = ["--symbols", "AAA,BBB", "--source", "csv", "--steps", "64"]
        result = tt(env, "train", *window, "--start", "2023-01-01", "--end", "2024-01-01", *flag)
        assert result.exit_code == 1, result.output
        assert (
            "1d: no stored bar in [2023-01-01, 2024-01-01) (stored: AAA 2025-01-02..2025-09-29"
            in result.output
        )
