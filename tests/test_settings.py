"""The settings object: every environment variable, typed; the README's table lists exactly these."""

from __future__ import annotations

import pytest

from tt_assets.resources import DatabaseResource, MarketDataResource
from tt_resources.config import PROJECT_ROOT, SettingsError, markdown_table, settings


def test_readme_configuration_table_is_the_settings_table():
    readme = (PROJECT_ROOT / "README.md").read_text()
    assert markdown_table() in readme, "regenerate the README table: python -c " + (
        "'from tt_resources.config import markdown_table; print(markdown_table())'"
    )


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("IB_PORT", "abc", "IB_PORT: input should be a valid integer"),
        ("IB_PORT", "70000", "IB_PORT: input should be less than or equal to 65535"),
        ("TT_SOURCE", "nosuch", "TT_SOURCE: input should be 'synthetic', 'csv' or 'ibkr'"),
        ("TT_IB_WINDOW_S", "0", "TT_IB_WINDOW_S: input should be greater than 0"),
        ("TT_WATCHLIST_LIMIT", "two", "TT_WATCHLIST_LIMIT: input should be a valid integer"),
        ("TT_CSV_TZ", "Mars/Olympus", "TT_CSV_TZ: not an IANA time zone name"),
        ("TT_SYNTHETIC_END", "yesterday", "TT_SYNTHETIC_END: not a date YYYY-MM-DD or `now`"),
        ("TT_CSV_DATE_FORMAT", "dmy", "TT_CSV_DATE_FORMAT: input should be 'day-first' or 'month-first'"),
    ],
)
def test_a_bad_value_names_its_variable(monkeypatch, variable, value, message):
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError, match=f"^{message}.*got '{value}'"):
        settings()


def test_resources_reference_set_variables_by_name_never_by_value(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgresql://user:secret@db:5432/tt")
    monkeypatch.setenv("TT_SOURCE", "csv")
    monkeypatch.setenv("TT_CSV_TZ", "America/New_York")
    database, market = DatabaseResource.from_env(), MarketDataResource.from_env()
    assert "secret" not in repr(database) and "DATABASE_URL" in repr(database)
    assert "TT_CSV_TZ" in repr(market) and market.ib_port == 4002
    # a closed set of names (an enum field, which an EnvVar cannot fill) is given as its checked value
    assert market.source == "csv"


def test_market_data_resource_fields_reach_the_sources(tmp_path):
    """Every value a source takes travels as a field of the market_data resource (the run config)."""
    from tt_resources.sources import make_source

    ibkr = {
        "ib_host": "gw",
        "ib_port": 4100,
        "ib_client_id": 9,
        "ib_client_ids": 3,
        "ib_timeout_s": 7.0,
        "ib_reconnect_s": 11.0,
        "ib_pacing": "strict",
        "ib_max_requests": 30,
        "ib_window_s": 300.0,
        "ib_concurrency": 5,
    }
    fields = {"csv_dir": str(tmp_path), "csv_tz": "America/New_York", "csv_date_format": "day-first"}
    csv = make_source(MarketDataResource(source="csv", **fields).source_settings())
    assert (csv.directory, csv.tz, csv.date_format) == (tmp_path, "America/New_York", "day-first")
    settings = MarketDataResource(source="ibkr", hole_attempts=4, **ibkr).source_settings()
    source = make_source(settings)
    s, rules = source.settings, source.budget.rules
    assert (s.host, s.port, s.client_id, s.client_id_attempts) == ("gw", 4100, 9, 3)
    assert (s.request_timeout_s, s.reconnect_s, settings.hole_attempts) == (7.0, 11.0, 4)
    assert (rules.mode, rules.max_requests, rules.window_s, rules.concurrency) == ("strict", 30, 300.0, 5)
    assert source.concurrency == 5
    signal = MarketDataResource(synthetic_signal="none").source_settings()
    assert make_source(signal).signal == "none"


def test_unset_variables_keep_the_embedded_defaults(monkeypatch, tmp_path):
    for name in ("DATABASE_URL", "TT_SOURCE", "DAGSTER_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TT_DATA_DIR", str(tmp_path))
    env = settings()
    assert (env.tt_source, env.ib_port, env.tt_ib_max_requests) == ("synthetic", 4002, 60)
    from tt_resources import config

    assert config.database_url() == f"sqlite:///{tmp_path / 'tt.sqlite'}"
    assert config.dagster_home() == (tmp_path / "dagster_home").resolve()


def test_every_command_refuses_a_bad_variable_in_one_line(monkeypatch):
    from click.testing import CliRunner

    from tt_cli.main import cli

    monkeypatch.setenv("TT_IB_MAX_REQUESTS", "many")
    result = CliRunner().invoke(cli, ["watchlist"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "Error: TT_IB_MAX_REQUESTS: input should be a valid integer, unable to parse string as an integer "
        "(got 'many')"
    ]
