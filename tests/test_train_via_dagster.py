"""`tt train --via-dagster` refuses what only the direct path does. Its whole chain, recorded as Dagster runs
with lineage, is asserted on the run tests/test_one_pipeline.py compares with the direct path."""

from __future__ import annotations

from click.testing import CliRunner

from tt_cli.main import cli


def test_model_dir_is_refused_with_via_dagster(tmp_path, monkeypatch):
    monkeypatch.setenv("TT_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'tt.sqlite'}")
    result = CliRunner().invoke(cli, ["train", "--via-dagster", "--model-dir", str(tmp_path)])
    assert result.exit_code == 2 and "--model-dir" in result.output
