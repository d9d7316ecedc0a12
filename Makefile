# Thin wrappers over commands you can run by hand; see README.md.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
REPO ?= model_repository
PORT ?= 8500
PYTEST_ARGS ?=
LOADTEST_ARGS ?=

.PHONY: serve test demo-models protos protos-check lint fmt bench loadtest fuzz soak clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[tf,cpu,train,dev]'
	touch $@

## serve: install, train the demo models if the repository is empty, serve them on 127.0.0.1:$(PORT)
serve: $(VENV)/.installed demo-models
	$(PY) -m service --repository.path $(REPO) --server.port $(PORT)

## demo-models: train and publish the demo models unless the repository already has some
demo-models: $(VENV)/.installed
	$(PY) scripts/demo_models.py --repository $(REPO)

## test: install the dev dependencies and run the whole suite
test: $(VENV)/.installed
	$(PY) scripts/gen_protos.py --check
	$(VENV)/bin/ruff check .
	$(PY) -m pytest $(PYTEST_ARGS)

## loadtest: serve $(REPO) on loopback, run locust headless (16 users, 30 s), write loadtests/reports/; fails on a threshold
loadtest: $(VENV)/.installed demo-models
	$(PY) loadtests/run_loadtest.py --repository $(REPO) $(LOADTEST_ARGS)

## protos: regenerate service/api from protos/
protos: $(VENV)/.installed
	$(PY) scripts/gen_protos.py

## fuzz: the long fuzz run, fresh examples against the CLI server (FUZZ_EXAMPLES per property)
FUZZ_EXAMPLES ?= 20000
fuzz: $(VENV)/.installed
	BATCHWISE_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) BATCHWISE_FUZZ_SERVER=subprocess $(PY) -m pytest tests/fuzz -x -s

## soak: 200,000 mixed valid and invalid requests against one server process serving $(REPO)
soak: $(VENV)/.installed demo-models
	$(PY) loadtests/soak.py --repository $(REPO)

protos-check: $(VENV)/.installed
	$(PY) scripts/gen_protos.py --check

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

fmt: $(VENV)/.installed
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

## bench: the benchmark in one run (ceilings, batching on/off, metrics on/off, variants, overload, MLServer peer);
## writes loadtests/results/<date>-<machine>.json and .png. BENCH_ARGS=--quick for a short run.
BENCH_ARGS ?=
bench: $(VENV)/.installed
	$(PY) -m loadtests.bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis .cache

.PHONY: image-locks deploy-check

## image-locks: re-pin what the container images install (deploy/docker/requirements/*.txt; Linux x86_64, Python 3.11)
image-locks: $(VENV)/.installed
	$(PY) scripts/lock_image_requirements.py

## deploy-check: validate deploy/ offline: kustomize render, kubernetes-validate, hadolint, yamllint, cross-checks
deploy-check: $(VENV)/.installed
	$(PY) -m pytest tests/deploy tests/unit/test_healthcheck.py
