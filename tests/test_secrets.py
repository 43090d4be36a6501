"""A database password with `@ % / :` in it never shows: given correctly (percent-escaped) a run via Dagster
leaves no trace of it in the output, the Dagster instance's files or any table; given unescaped it is
refused in one line that shows none of its parts."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from sqlalchemy.engine import make_url

from tt_cli.main import cli
from tt_resources.db.engine import create_engine
from tt_resources.db.schema import metadata

SECRET = "P@ss%w/rd:X9"
# the password and every piece of it a wrong parse could print, as typed and percent-escaped
TRACES = (SECRET, "P%40ss%25w%2Frd%3AX9", "P@ss", "ss%w", "rd:X9", "%w/rd")
START = (pd.Timestamp.now(tz="UTC") - pd.Timedelta(days=20)).strftime("%Y-%m-%d")


def tt(tmp_path: Path, url: str, *args: str):
    env = {"DATABASE_URL": url, "DAGSTER_HOME": str(tmp_path / "home"), "TT_DATA_DIR": str(tmp_path / "data")}
    return CliRunner().invoke(cli, list(args), env={**env, "COLUMNS": "200"})


def leaks(text: str) -> list[str]:
    return [trace for trace in TRACES if trace in text]


def test_an_unescaped_password_is_refused_without_showing_any_part_of_it(tmp_path, pg_url):
    url = pg_url.replace("postgres@", f"postgres:{SECRET}@", 1)
    for args in (["show"], ["ingest", "--symbols", "AAA", "--via-dagster"], ["db", "upgrade"]):
        result = tt(tmp_path, url, *args)
        assert result.exit_code == 2 and leaks(result.output) == [], result.output
        assert (
            "DATABASE_URL: more than one '@' before the host; escape @ in the password as %40"
            in result.output
        )
    assert not (tmp_path / "data").exists() and not (tmp_path / "home").exists()


@pytest.mark.slow
def test_a_correctly_given_password_leaves_no_trace(tmp_path, pg_url):
    url = make_url(pg_url).set(password=SECRET).render_as_string(hide_password=False)  # the server trusts
    assert "%40" in url
    args = ["ingest", "--symbols", "AAA,BBB", "--interval", "1d", "--start", START, "--via-dagster"]
    result = tt(tmp_path, url, *args)
    assert result.exit_code == 0, result.output
    assert leaks(result.output) == []
    unreachable = tt(tmp_path, url.replace(f":{make_url(pg_url).port or 5432}/", ":1/"), "show")
    assert unreachable.exit_code == 2 and "cannot connect to postgresql database" in unreachable.output
    assert leaks(unreachable.output) == []
    files = [path for path in (tmp_path / "home").rglob("*") if path.is_file()]
    assert files and [str(p) for p in files if leaks(p.read_bytes().decode("utf-8", "replace"))] == []
    engine = create_engine(pg_url)
    with engine.connect() as conn:
        for table in metadata.sorted_tables:
            rows = conn.execute(sa.select(table)).all()
            assert leaks(repr(rows)) == [], table.name
    engine.dispose()
