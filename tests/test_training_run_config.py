"""ppo_model's run config is the RLConfig: the Launchpad scaffolds RLConfig's defaults, a wrong type or
unknown key fails Dagster's schema, a bad value or combination is refused with RLConfig's one line when the
run is launched (no run is created, no step runs), in-process and from the UI."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import dagster as dg
import pytest
import yaml

from tests.test_dagster_ui_browser import webserver
from tt_assets.definitions import defs
from tt_assets.partitions import register_training_timeframe
from tt_rl.config import RLConfig, RLConfigError

DEFAULTS = RLConfig().to_dict()
SELECTOR = {
    "repositoryLocationName": "tt_platform",
    "repositoryName": "__repository__",
    "pipelineName": "retrain_job",
}
NEGATIVE_RATE = {"ppo": {"learning_rate": -1}}
NEGATIVE_RATE_LINE = "ppo_model config: ppo.learning_rate: must be > 0 (got -1.0)"


def ppo_model(values: dict) -> dict:
    """A run config with `values` (RLConfig sections) as ppo_model's config."""
    return {"ops": {"ppo_model": {"config": values}}}


def test_the_launchpad_defaults_are_rlconfigs():
    job = defs.resolve_job_def("retrain_job")
    ops = job.run_config_schema.config_type.fields["ops"].config_type
    assert (
        ops.fields["ppo_model"].config_type.fields["config"].default_value == DEFAULTS
    )  # what is scaffolded
    resolved = dg.validate_run_config(job, {})  # what a run launched without config trains with
    assert resolved["ops"]["ppo_model.plan_jobs"]["config"] == DEFAULTS


@pytest.mark.parametrize(
    ("values", "line"),
    [
        (NEGATIVE_RATE, NEGATIVE_RATE_LINE),
        (
            {"ppo": {"batch_size": 1024}},
            "ppo_model config: ppo.batch_size: must be <= ppo.n_steps * ppo.n_envs = 512 (got 1024)",
        ),
        (  # a list of feature names: Dagster takes any strings, RLConfig only the features
            {"ppo": {"cross_features": ["ret_1", "volume"]}},
            "ppo_model config: ppo.cross_features[1]: must be 'ret_1', 'log_ret_1', 'vol_10', 'vol_20', "
            "'mom_20', 'rsi_14', 'volume_z_20' or 'hl_range' (got 'volume')",
        ),
    ],
)
def test_a_bad_value_is_refused_at_launch_with_rlconfigs_line(values, line):
    with dg.instance_for_test() as instance:
        register_training_timeframe(instance, "1d")
        with pytest.raises(dg.DagsterConfigMappingFunctionError) as refused:
            defs.resolve_job_def("retrain_job").execute_in_process(
                instance=instance, partition_key="1d", run_config=ppo_model(values)
            )
        assert isinstance(refused.value.__cause__, RLConfigError)
        assert str(refused.value.__cause__) == line
        assert instance.get_runs() == []


@pytest.mark.parametrize(
    ("values", "path"),
    [
        ({"ppo": {"n_epochs": "two"}}, "ppo:n_epochs"),
        ({"ppo": {"n_epochs": True}}, "ppo:n_epochs"),
        ({"ppo": {"n_epochs": 1.5}}, "ppo:n_epochs"),
        ({"env": {"long_only": "no"}}, "env:long_only"),
        ({"ppo": {"vec_env": "threads"}}, "ppo:vec_env"),
        ({"eval": {"oracle": "nope"}}, "eval:oracle"),  # an optional closed set: Dagster offers its names
        ({"ppo": {"learning_rat": 1e-3}}, '"learning_rat"'),
    ],
)
def test_a_wrong_type_or_unknown_key_fails_the_schema(values, path):
    with pytest.raises(dg.DagsterInvalidConfigError, match=path):
        dg.validate_run_config(defs.resolve_job_def("retrain_job"), ppo_model(values))


def graphql(base: str, query: str, variables: dict) -> dict:
    """The webserver's GraphQL answer (what the UI's pages read)."""
    request = urllib.request.Request(
        f"{base}/graphql",
        data=json.dumps({"query": query, "variables": variables}).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            body = response.read()
    except urllib.error.HTTPError as error:  # an answer with a PythonError comes with status 500
        body = error.read()
    return json.loads(body)["data"]


LAUNCHPAD = """query Launchpad($selector: PipelineSelector!) {
  runConfigSchemaOrError(selector: $selector) { ... on RunConfigSchema { rootDefaultYaml } }
}"""
LAUNCH = """mutation Launch($params: ExecutionParams!) {
  launchPipelineExecution(executionParams: $params) {
    __typename
    ... on PythonError { causes { message } }
  }
}"""


@pytest.mark.slow
def test_the_ui_scaffolds_rlconfig_and_refuses_a_bad_value_at_launch(tmp_path, monkeypatch):
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    monkeypatch.setenv("TT_DATA_DIR", str(tmp_path / "data"))
    with webserver(home, tmp_path / "webserver.log") as base:
        scaffold = yaml.safe_load(
            graphql(base, LAUNCHPAD, {"selector": SELECTOR})["runConfigSchemaOrError"]["rootDefaultYaml"]
        )
        shown = scaffold["ops"]["ppo_model"]["config"]
        # the scaffold leaves out keys whose default is None
        assert shown == {
            name: {k: v for k, v in section.items() if v is not None} for name, section in DEFAULTS.items()
        }

        params = {
            "selector": {**SELECTOR, "assetSelection": [{"path": ["ppo_model"]}]},
            "mode": "default",
            "runConfigData": ppo_model(NEGATIVE_RATE),
            "executionMetadata": {"tags": [{"key": "dagster/partition", "value": "1d"}]},
        }
        refused = graphql(base, LAUNCH, {"params": params})["launchPipelineExecution"]
        assert refused["__typename"] == "PythonError"
        assert [c["message"].strip() for c in refused["causes"]] == [
            f"tt_rl.config.RLConfigError: {NEGATIVE_RATE_LINE}"
        ]
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert instance.get_runs() == []
