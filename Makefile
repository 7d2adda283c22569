# One entry point for people and CI. `make demo` and `make test` work on a fresh machine:
# they install uv if it is missing, create .venv from uv.lock, then run.
UV := $(shell command -v uv 2>/dev/null || echo "python3 -m uv")
VENV := .venv
# bash with pipefail: a benchmark piped into tee still fails the target when it fails
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
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

# make bench [BENCH_ROOT=/work/bench-data] [BENCH_SIZES="20000 80000 200000"] [BENCH_BEFORE=../base]:
# every figure of benchmarks/README.md's issue-16 table in one command. A world of
# benchmarks/generate_data.py is made once per size (BENCH_ROOT/w20k, w80k, w200k: minutes each)
# and reused while its .done marker is there; BENCH_BEFORE adds the weekly job of another
# checkout, interleaved (before/after). Logs: BENCH_ROOT/logs/.
BENCH_ROOT ?= benchmarks/data
BENCH_SIZES ?= 20000
BENCH_BEFORE ?=
BENCH_FIRST = $(BENCH_ROOT)/w$(shell expr $(firstword $(BENCH_SIZES)) / 1000)k
bench: $(SYNCED)  ## benchmarks: features, the weekly job per size, training, write-back, scoring
	@mkdir -p $(BENCH_ROOT)/logs
	@for n in $(BENCH_SIZES); do d=$(BENCH_ROOT)/w$$((n / 1000))k; \
		test -f $$d/.done || $(VENV)/bin/python benchmarks/generate_data.py --accounts $$n --out $$d \
			|| exit 1; done
	$(VENV)/bin/python benchmarks/bench_features.py --data $(BENCH_FIRST) \
		| tee $(BENCH_ROOT)/logs/features.txt
	@for n in $(BENCH_SIZES); do d=$(BENCH_ROOT)/w$$((n / 1000))k; \
		$(VENV)/bin/python benchmarks/bench_weekly_memory.py --data $$d \
			$(if $(BENCH_BEFORE),--before $(BENCH_BEFORE)) | tee $(BENCH_ROOT)/logs/weekly-$$n.txt \
			|| exit 1; done
	$(VENV)/bin/python benchmarks/bench_train.py --data $(BENCH_FIRST) --work $(BENCH_ROOT)/train \
		| tee $(BENCH_ROOT)/logs/train.txt
	$(VENV)/bin/python benchmarks/bench_writeback.py | tee $(BENCH_ROOT)/logs/writeback.txt
	$(VENV)/bin/python benchmarks/bench_scoring.py | tee $(BENCH_ROOT)/logs/scoring.txt

mlflow-ui: $(SYNCED)  ## browse runs and registered models at http://127.0.0.1:5000
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false $(VENV)/bin/mlflow ui --workers 1 --host 127.0.0.1 \
		--backend-store-uri sqlite:///$(CURDIR)/data/mlflow.db --default-artifact-root $(CURDIR)/data/mlartifacts

clean:
	rm -rf data .pytest_cache .ruff_cache .mypy_cache
