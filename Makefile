# newswatch: `make run` and `make test` do all set-up on a fresh machine.
# The newest of Python 3.13, 3.12 and 3.11 that runs here (a pyenv shim may exist and not run); PYTHON=... overrides.
PYTHON ?= $(shell for v in 3.13 3.12 3.11; do python$$v -c '' 2>/dev/null && { echo python$$v; break; }; done)
VENV := .venv
BIN := $(VENV)/bin
MODEL := classifiers/model/topic_model.joblib
CORPUS := $(wildcard classifiers/data/corpus/*.jsonl classifiers/data/dev/*.jsonl)
FEEDS ?= pipelines/defaults/feeds.yaml
WATCHLIST ?= pipelines/defaults/watchlist.yaml
MODE ?= batch
OUT ?= out
ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install system-deps run test train eval bench lint clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

install: $(BIN)/.installed ## create .venv/ with newswatch and its test tools installed

$(BIN)/.installed: pyproject.toml
	@test -n "$(PYTHON)" || { echo "make: no python3.13, python3.12 or python3.11 on PATH; install one, or name it: make PYTHON=/path/to/python3" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,lint,gcp]'
	touch $@

system-deps: ## install the system packages the tests use (Prometheus, Alertmanager, Java, Maven) where missing
	./deploy/install-system-deps.sh

$(MODEL): $(BIN)/.installed $(CORPUS) classifiers/train.py classifiers/topic_model.py classifiers/corpus.py classifiers/passages.py pipelines/furniture.py
	$(BIN)/python -m classifiers.train --out $(MODEL)

run: install $(MODEL) ## run on the bundled feeds (or FEEDS=... WATCHLIST=... MODE=stream OUT=... ARGS=...)
	$(BIN)/newswatch run --feeds $(FEEDS) --watchlist $(WATCHLIST) --mode $(MODE) --out $(OUT) $(ARGS)

test: install system-deps $(MODEL) flink-jar ## run the whole test suite
	$(BIN)/python -m pytest

train: install ## retrain the topic model from the labeled corpus
	$(BIN)/python -m classifiers.train --out $(MODEL)

eval: install $(MODEL) ## evaluate the topic model on the development set's held-out half (and the corpus's test part)
	$(BIN)/python -m classifiers.evaluate --model $(MODEL)

bench: install $(MODEL) ## run the benchmarks (not part of make test)
	$(BIN)/python -m bench.run

# Running at scale: Flink and Dataflow (deploy/flink/, deploy/dataflow/, docs/scale.md).
FLINK_VERSION ?= 2.2
.PHONY: flink-jar test-flink dataflow-template

flink-jar: ## fetch Beam's Flink job-server jar into .cache/flink/ with Maven (if it cannot, the Flink tests skip)
	FLINK_VERSION=$(FLINK_VERSION) ./deploy/flink/fetch-job-server.sh

test-flink: install system-deps $(MODEL) ## run the Flink tests alone; fails when Java or the jar cannot be had
	NEWSWATCH_REQUIRE_FLINK=1 FLINK_VERSION=$(FLINK_VERSION) ./deploy/flink/fetch-job-server.sh
	NEWSWATCH_REQUIRE_FLINK=1 FLINK_VERSION=$(FLINK_VERSION) $(BIN)/python -m pytest tests/test_flink.py

dataflow-template: $(MODEL) ## build and push the Dataflow Flex Template (IMAGE=... TEMPLATE=gs://...; needs docker, gcloud)
	IMAGE=$(IMAGE) TEMPLATE=$(TEMPLATE) ./deploy/dataflow/build-template.sh

lint: install ## ruff check and format check
	$(BIN)/ruff check pipelines classifiers tests bench
	$(BIN)/ruff format --check pipelines classifiers tests bench

clean: ## remove the virtualenv, the model and outputs
	rm -rf $(VENV) $(MODEL) out
