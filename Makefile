# One entry point for people and CI. `make demo` and `make test` work on a fresh machine:
# they install uv if it is missing, create .venv from uv.lock, then run.
UV := $(shell command -v uv 2>/dev/null || echo "python3 -m uv")
VENV := .venv
SYNCED := $(VENV)/.synced

.PHONY: demo test test-all lint format bench mlflow-ui clean

$(SYNCED): pyproject.toml uv.lock
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 || \
		python3 -m pip install --quiet "uv==0.13.8"
	UV_COMPILE_BYTECODE=1 $(UV) sync --frozen
	@touch $@

demo: $(SYNCED)  ## generate demo data, train, score two weeks, write risk lists and a report
	$(VENV)/bin/churnlens demo

test: $(SYNCED)  ## the test suite (PostgreSQL at 127.0.0.1:5432 included; slow tests skipped)
	$(VENV)/bin/pytest -q

test-all: $(SYNCED)  ## every test, slow ones included
	CHURNLENS_SLOW=1 $(VENV)/bin/pytest -q

lint: $(SYNCED)  ## ruff (format + check) and mypy over the four packages ([tool.mypy])
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

format: $(SYNCED)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# make bench BENCH_DATA=/work/bench-data/w20k [BENCH_BEFORE=../base-checkout]: an existing world
# of benchmarks/generate_data.py is used as it is (20k accounts / 50M events generated when absent:
# minutes); BENCH_BEFORE adds the weekly job of another checkout, interleaved (before/after)
BENCH_DATA ?= benchmarks/data
BENCH_BEFORE ?=
bench: $(SYNCED)  ## benchmarks: features, the weekly job (seconds, CPU, peak RSS per step), scoring
	@test -d $(BENCH_DATA)/usage_events || \
		$(VENV)/bin/python benchmarks/generate_data.py --accounts 20000 --out $(BENCH_DATA)
	$(VENV)/bin/python benchmarks/bench_features.py --data $(BENCH_DATA)
	$(VENV)/bin/python benchmarks/bench_weekly_memory.py --data $(BENCH_DATA) \
		$(if $(BENCH_BEFORE),--before $(BENCH_BEFORE))
	$(VENV)/bin/python benchmarks/bench_scoring.py

mlflow-ui: $(SYNCED)  ## browse runs and registered models at http://127.0.0.1:5000
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false $(VENV)/bin/mlflow ui --workers 1 --host 127.0.0.1 \
		--backend-store-uri sqlite:///$(CURDIR)/data/mlflow.db --default-artifact-root $(CURDIR)/data/mlartifacts

clean:
	rm -rf data .pytest_cache .ruff_cache .mypy_cache
