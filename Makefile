# finbento: `make up` sets up, trains what is missing, builds and serves; `make test` runs the tests.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: up test lint bench bench-short scheduler smoke-image clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

up: $(BIN)/.installed          ## train missing models on shipped data, build the Bento, serve on :3000
	$(BIN)/finbento up

test: $(BIN)/.installed        ## unit, integration (real MLflow, PostgreSQL, bentoml serve) and model tests
	$(BIN)/python -m pytest

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: $(BIN)/.installed       ## serving, load, vs mlflow/FastAPI, memory, hostile traffic, transactions, fraud-vs-handbook, spending, recommend, prediction-log (minutes each)
	$(BIN)/finbento up --no-serve
	$(BIN)/finbento build --bundle language
	$(BIN)/finbento build --bundle forecast
	$(BIN)/finbento build --bundle recommend
	$(BIN)/finbento build --bundle risk
	$(BIN)/finbento build --bundle advisor
	$(BIN)/python bench/serving.py
	$(BIN)/python bench/serving.py --model intent --concurrency 1 8 32
	$(BIN)/python bench/compare.py
	$(BIN)/python bench/load.py
	$(BIN)/python bench/memory.py
	$(BIN)/python bench/hostile.py
	$(BIN)/python bench/transactions.py
	$(BIN)/python bench/fraud_handbook.py
	$(BIN)/python bench/spending.py
	$(BIN)/python bench/recommend.py
	$(BIN)/python bench/prediction_log.py

bench-short: $(BIN)/.installed ## the same, short (CI; intent fine-tuned for 1 epoch)
	FINBENTO_INTENT_EPOCHS=1 $(BIN)/finbento up --no-serve
	$(BIN)/finbento build --bundle language
	$(BIN)/finbento build --bundle forecast
	$(BIN)/finbento build --bundle recommend
	$(BIN)/finbento build --bundle risk
	$(BIN)/finbento build --bundle advisor
	$(BIN)/python bench/serving.py --short
	$(BIN)/python bench/serving.py --model intent --short
	$(BIN)/python bench/compare.py --short
	$(BIN)/python bench/load.py --short
	$(BIN)/python bench/memory.py --short
	$(BIN)/python bench/hostile.py --short
	$(BIN)/python bench/transactions.py --short
	$(BIN)/python bench/fraud_handbook.py --short
	$(BIN)/python bench/spending.py --short
	$(BIN)/python bench/recommend.py --short
	$(BIN)/python bench/prediction_log.py --short

scheduler: $(BIN)/.installed   ## the unattended loop: drift checks, retrains, rebuilds, local deploys
	$(BIN)/finbento scheduler run

smoke-image: $(BIN)/.installed ## build the risk image, run it, /readyz + one prediction (starts a local engine if needed)
	@docker info >/dev/null 2>&1 || eval "$$(deploy/engine/local-docker.sh start)"; \
	  $(BIN)/python deploy/smoke_image.py --bundle risk $${FINBENTO_CA_BUNDLE:+--ca-bundle $$FINBENTO_CA_BUNDLE}

clean:
	rm -rf .finbento bench/results
