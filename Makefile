# agentplane: `make dev` serves the whole API locally; `make test` runs every check CI runs.
PYTHON ?= python3.11
VENV := .venv
SAM_VENV := .venv-sam
PY := $(VENV)/bin/python
SAM := $(SAM_VENV)/bin/sam
export AWS_DEFAULT_REGION ?= us-east-1
export SAM_CLI_TELEMETRY := 0
# sam validate/build need credentials to exist, never to be valid: they stay offline.
OFFLINE_AWS := AWS_ACCESS_KEY_ID=offline AWS_SECRET_ACCESS_KEY=offline AWS_SESSION_TOKEN=offline

.PHONY: dev dev-reset test lint typecheck unit suite template build deploy bench openapi events access-patterns generate clean

$(VENV)/.installed: requirements-dev.txt layers/agentplane/python/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

# aws-sam-cli pins its own boto3 and pydantic, so it lives in a virtualenv of its own.
$(SAM_VENV)/.installed: requirements-sam.txt
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-sam.txt
	touch $@

dev: $(VENV)/.installed
	$(PY) -m devstack

# Wipes the data `make dev` keeps: AGENTPLANE_DATA_DIR if set, else .local; never /, ~ or the repository.
dev-reset:
	@dir="$${AGENTPLANE_DATA_DIR-.local}"; \
	if [ -z "$$dir" ]; then echo "make dev-reset: AGENTPLANE_DATA_DIR is set but empty; nothing wiped" >&2; exit 1; fi; \
	real="$$(realpath -m -- "$$dir")"; \
	case "$$real" in /|"$$(realpath -m ~)"|"$$(pwd -P)") echo "make dev-reset: refusing to wipe $$real" >&2; exit 1;; esac; \
	rm -rf -- "$$dir" && echo "wiped $$real"

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(VENV)/.installed
	$(VENV)/bin/mypy

# One worker per core; a test file stays on one worker, so a module's fixtures and files are its own.
suite: $(VENV)/.installed $(SAM_VENV)/.installed
	SAM_CLI=$(abspath $(SAM)) $(PY) -m pytest --numprocesses=auto --dist=loadfile --cov --cov-report=term

# The fast part alone (keys, cursors, entities, store): seconds, for the edit-test loop.
unit: $(VENV)/.installed
	$(PY) -m pytest tests/unit --numprocesses=auto --dist=loadfile

template: $(VENV)/.installed $(SAM_VENV)/.installed
	$(OFFLINE_AWS) $(SAM) validate --lint
	$(VENV)/bin/cfn-lint template.yaml

test: lint typecheck template suite

build: $(SAM_VENV)/.installed
	$(SAM) build

deploy: build
	$(SAM) deploy --guided

bench: $(VENV)/.installed
	$(PY) -m bench

openapi: $(VENV)/.installed
	$(PY) -m tools.openapi

# Sample events for `sam local invoke -e events/<file>` (one per route family and scheduled
# function) and events/env.json for --env-vars; generated here, not committed.
events: $(VENV)/.installed
	$(PY) -m tools.events

access-patterns: $(VENV)/.installed
	$(PY) -m tools.access_patterns

# Everything generated from template.yaml and the code; the tests fail when the committed
# openapi.json or docs/access-patterns.md is stale.
generate: openapi events access-patterns

clean:
	rm -rf $(VENV) $(SAM_VENV) .aws-sam .coverage htmlcov
