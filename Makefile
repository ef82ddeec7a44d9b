# userstats: `make run` runs it, `make test` tests it. Both create .venv when it is missing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
REF    := tests/reference/requirements.txt
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml requirements.lock $(REF) 2>/dev/null | cksum | cut -d' ' -f1)
CODE   := ingest query shared sim launcher userstats examples
RUN_ARGS ?=

.PHONY: venv run demo test soak lint typecheck unit integration bench clean

$(STAMP):
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c requirements.lock -e '.[dev]'
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --require-hashes \
		--upgrade --target $(VENV)/reference -r $(REF)
	@rm -f $(VENV)/.installed-* && touch $@

venv: $(STAMP)

## run: local nats-server (JetStream under ./data), ingest and one query replica; Ctrl-C stops all
run: $(STAMP)
	$(BIN)/userstats-run $(RUN_ARGS)

## demo: the same, plus the simulator publishing 200 events/s
demo: $(STAMP)
	$(BIN)/userstats-run --sim-rate 200 $(RUN_ARGS)

## test: format check, lint, types, then every test
test: lint typecheck
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff format --check $(CODE) tests bench
	$(BIN)/ruff check $(CODE) tests bench

typecheck: $(STAMP)
	$(BIN)/mypy --strict $(CODE)

## soak: the fault tests at larger scale (1M events, 5 kills, 100k poison messages and requests; ~15 min)
soak: $(STAMP)
	$(BIN)/pytest -q -m soak --timeout 1800

unit: $(STAMP)
	$(BIN)/pytest -q tests/unit

integration: $(STAMP)
	$(BIN)/pytest -q tests/integration

## bench: every benchmark in bench/ (tables on stdout, JSON in bench/results/; about 15 minutes)
bench: $(STAMP)
	$(BIN)/python -m bench.run_all

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
