# casebus — every target does its own set-up on a fresh Debian machine with Python 3.11+:
# deploy/setup-system installs the system packages (PostgreSQL, Java, Maven, Chromium, Node...)
# and the AsyncAPI parser when they are missing, and returns at once when they are not.
#   make demo   the whole bus on local Kafka + PostgreSQL, driving a scenario end to end
#   make test   the test suite against a real broker and database
#   make test-fast  the tests that need neither (-m "not integration"): no Kafka, no PostgreSQL
#   make test-sm2   the signing paths' tests again under the 国密 profile (CASEBUS_CRYPTO_PROFILE=sm2)
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
ARGS ?=

.PHONY: system setup infra demo test test-fast test-sm2 lint bench soak down status clean

# Shared with .ci/run: sudo when not root; nothing to do (a few file tests) when all is there.
system:
	@deploy/setup-system

setup: system $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

# Starts (or reuses) the local Kafka broker and PostgreSQL; writes their addresses to .casebus/env
# as defaults: a caller that already set CASEBUS_KAFKA_BOOTSTRAP / CASEBUS_DATABASE_URL keeps them.
infra:
	@mkdir -p .casebus
	set -o pipefail; deploy/local/up | sed -E 's/^export ([A-Z_]+)=(.*)$$/export \1="$${\1:-\2}"/' > .casebus/env.tmp
	mv .casebus/env.tmp .casebus/env

# The set-up steps say nothing unless something is wrong (their logs at a terminal show warnings
# and worse), so the demo's own banner is the first thing a person reads.
demo: setup infra
	source .casebus/env && $(BIN)/casebus db migrate >/dev/null \
	  && $(BIN)/casebus topics ensure >/dev/null \
	  && $(BIN)/casebus --dev demo $(ARGS)

test: setup infra
	source .casebus/env && $(BIN)/pytest $(ARGS)

# No infra: tests/conftest.py marks every test that needs the broker or the database integration.
test-fast: setup
	$(BIN)/pytest -m "not integration" $(ARGS)

# The sm2 lane: every test file below makes its agencies' and the SLA engine's keys of the run's
# crypto profile, so under CASEBUS_CRYPTO_PROFILE=sm2 they sign with SM2 over SM3: the router's
# receipts and refusals, the adapters' submissions and acks, inbox and outbox, the SLA engine's
# notices, the criminal chain end to end, attachments, key rotation, the service processes, the
# headless demo. test_profile_lane.py fails unless every signature the router verified was of the
# profile's algorithm, and records which it saw; .ci/run holds the report to sm2-sm3. About 3.5
# minutes on a quiet machine. This is the one list of the lane's tests.
SM2_LANE := \
  tests/test_profile_lane.py \
  tests/test_signature_policy.py \
  tests/test_router.py \
  tests/test_inbox.py \
  tests/test_outbox.py \
  tests/test_sla_engine.py \
  tests/test_criminal_chain.py \
  tests/test_attachments_process.py \
  tests/test_router_attachments.py \
  tests/test_agency_db.py \
  tests/test_adapter_regulators.py \
  tests/test_cli_envelope.py \
  tests/test_service_roles.py \
  tests/test_demo.py::test_demo_runs_a_simulated_fortnight_and_every_expected_outcome_shows

test-sm2: setup infra
	source .casebus/env && CASEBUS_CRYPTO_PROFILE=sm2 $(BIN)/pytest $(SM2_LANE) $(ARGS)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The benchmarks, not the soak (bench/_*.py are their helpers).
bench: setup infra
	source .casebus/env && for b in bench/[!_]*.py; do [ "$$b" = bench/soak.py ] && continue; \
	  echo "== $$b"; $(BIN)/python $$b || exit 1; done

# Not in CI: 20 minutes of load through the adapters with a broker restart, a router kill, a
# webhook outage and a PostgreSQL restart. The restarts use deploy/local, so give it a private
# CASEBUS_STATE_DIR, CASEBUS_KAFKA_PORT and CASEBUS_PG_PORT; e.g. make soak ARGS="--rate 20".
soak: setup
	$(BIN)/python bench/soak.py $(ARGS)

down:
	deploy/local/down

status:
	deploy/local/status

clean: down
	rm -rf .casebus $(VENV)
