# Two commands on a fresh machine: `make demo` and `make test`. Everything else is optional.
SHELL := /bin/bash
PYTHON ?= python3
# `uv run` exports UV (its own binary): a make started under it (a test of `make dev`) uses that uv, not the
# venv's python3, which has no uv module
UV ?= $(PYTHON) -m uv
RUN := $(UV) run --frozen

.PHONY: setup demo test lint format bench dashboard dev workers clean

# --compile-bytecode: installed packages ship no .pyc and this machine sets PYTHONDONTWRITEBYTECODE, so without it
# every process (each Dagster step, `tt` subprocess, worker) compiles dagster, torch & co. from source again
.venv/.synced: uv.lock pyproject.toml
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet --disable-pip-version-check "uv>=0.5"
	$(UV) sync --frozen --compile-bytecode
	@touch $@

setup: .venv/.synced

demo: setup
	$(RUN) tt demo

# both cores; a file's tests share one worker (and its module-scoped scenarios); the 25 slowest are listed
test: setup
	bash scripts/ensure_services.sh
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	TT_REQUIRE_BROWSER=1 $(RUN) pytest -n 2 --dist loadfile --durations=25

lint: setup
	$(RUN) ruff check .
	$(RUN) ruff format --check .

format: setup
	$(RUN) ruff check --fix .
	$(RUN) ruff format .

bench: setup
	bash scripts/ensure_services.sh
	for b in bench/*.py; do $(RUN) python $$b || exit 1; done

dashboard: setup
	$(RUN) streamlit run tt_dashboard/app.py --server.address 127.0.0.1 --server.headless true --client.toolbarMode viewer --browser.gatherUsageStats false

dev: setup
	$(RUN) tt dev $(DEV_ARGS)

# N Celery workers for TT_EXECUTOR=celery (broker TT_CELERY_BROKER); Ctrl-C stops them
N ?= 2
workers: setup
	$(RUN) tt workers -n $(N)

clean:
	rm -rf .venv data/tt.sqlite* data/dagster_home data/models data/datasets
