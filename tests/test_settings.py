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
        ("TT_CSV_TZ", "Mars/Olympus", "TT_CSV_TZ: value error, not an iana time zone name"),
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
    database, market = DatabaseResource.from_env(), MarketDataResource.from_env()
    assert "secret" not in repr(database) and "DATABASE_URL" in repr(database)
    assert "TT_SOURCE" in repr(market) and market.ibkr.port == 4002


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
