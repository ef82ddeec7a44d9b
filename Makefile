# userstats: `make run` runs it, `make test` tests it. Both create .venv when it is missing.
SHELL  := /bin/bash
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
REF    := tests/reference/requirements.txt
BRIDGE := tests/reference/bridge-requirements.txt
KSHELL := tests/reference/shell-requirements.txt
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml requirements.lock $(REF) $(BRIDGE) $(KSHELL) 2>/dev/null | cksum | cut -d' ' -f1)
PIP_PINNED := $(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --require-hashes --upgrade
CODE   := ingest query shared sim launcher userstats examples
RUN_ARGS ?=

.PHONY: venv system-deps run demo test soak lint typecheck unit integration bench clean screenshots

$(STAMP):
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c requirements.lock -e '.[dev]'
	$(PIP_PINNED) --target $(VENV)/reference -r $(REF)
	$(PIP_PINNED) --target $(VENV)/bridge -r $(BRIDGE)
	$(PIP_PINNED) --target $(VENV)/kryten-shell -r $(KSHELL)
	@rm -f $(VENV)/.installed-* && touch $@

venv: $(STAMP)

## system-deps: the Debian packages the tests use, installed when missing and running as root:
## docker.io (a Docker engine for the compose tests), mmdebstrap (their stand-in base images),
## prometheus (promtool, and the Prometheus the compose test runs), chromium and chromium-driver
## (the page tests drive a real headless browser), curl and iproute2 (the README test runs the
## README's commands, curl among them, in a network namespace of its own)
SYSTEM_DEPS := dockerd=docker.io docker=docker.io mmdebstrap=mmdebstrap promtool=prometheus \
	chromium=chromium chromedriver=chromium-driver curl=curl ip=iproute2
system-deps:
	@missing=$$(for dep in $(SYSTEM_DEPS); do \
	    PATH="$$PATH:/usr/sbin:/sbin" command -v $${dep%%=*} >/dev/null 2>&1 || echo $${dep#*=}; done | sort -u); \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian packages for the tests:" $$missing; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	else \
	    echo "not installed:" $$missing "(install them as root; the tests that need them say so when they skip)"; \
	fi

## run: local nats-server (JetStream under ./data), ingest and one query replica; Ctrl-C stops all
run: $(STAMP)
	$(BIN)/userstats-run $(RUN_ARGS)

## demo: the same, plus the simulator publishing 200 events/s
demo: $(STAMP)
	$(BIN)/userstats-run --sim-rate 200 $(RUN_ARGS)

## test: format check, lint, types, then every test (the compose tests run the stack on Docker,
## the page tests a headless chromium)
test: system-deps lint typecheck
	$(BIN)/pytest -q

## screenshots: docs/img/channel-desktop.png and channel-phone.png from a simulated day
screenshots: $(STAMP) system-deps
	$(BIN)/python -m tests.screenshots docs/img

lint: $(STAMP)
	$(BIN)/ruff format --check $(CODE) tests testbed bench
	$(BIN)/ruff check $(CODE) tests testbed bench

## typecheck: mypy sees the installed layout (userstats.ingest is ingest/, ...) through a tree of
## symlinks, because it cannot follow the editable install's import hook
TYPECHECK := $(VENV)/typecheck
typecheck: $(STAMP)
	@rm -rf $(TYPECHECK) && mkdir -p $(TYPECHECK)/userstats
	@for f in userstats/*.py; do ln -s "$(CURDIR)/$$f" $(TYPECHECK)/$$f; done
	@for d in shared ingest query sim launcher; do ln -s "$(CURDIR)/$$d" $(TYPECHECK)/userstats/$$d; done
	$(BIN)/mypy --strict $(TYPECHECK)/userstats examples 2>&1 | sed -E "s#^$(TYPECHECK)/userstats/(shared|ingest|query|sim|launcher)/#\1/#; s#^$(TYPECHECK)/##"; exit $${PIPESTATUS[0]}

## soak: the fault tests at larger scale (1M events, 5 kills, 100k poison messages and requests; ~15 min)
soak: $(STAMP)
	$(BIN)/pytest -q -m soak --timeout 1800

unit: $(STAMP)
	$(BIN)/pytest -q tests/unit

integration: $(STAMP) system-deps
	$(BIN)/pytest -q tests/integration

## bench: every benchmark in bench/ (tables on stdout, JSON in bench/results/; about 35 minutes)
bench: $(STAMP)
	$(BIN)/python -m bench.run_all

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
