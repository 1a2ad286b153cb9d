# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test unit bench soak package clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/srdb demo

# checkov pins an old boto3, so it lives in a venv of its own.
CHECKOV_VENV := .venv-checkov
$(CHECKOV_VENV)/.installed:
	test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet 'checkov>=3.2,<4'
	touch $(CHECKOV_VENV)/.installed

# The suite waits on moto, worker processes and queues more than it computes: three pytest processes
# (pytest-xdist) keep two cores busy. Each has its own moto server and resources.
PYTEST_WORKERS ?= 3
test: $(STAMP) package $(CHECKOV_VENV)/.installed
	$(BIN)/ruff check producer worker reaper shared api tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache
	$(BIN)/pytest -q -n $(PYTEST_WORKERS)

unit: $(STAMP)
	$(BIN)/pytest -q -n $(PYTEST_WORKERS) -m "not e2e and not deploy and not slow"

bench: $(STAMP)
	$(BIN)/python -m bench

SOAK_SECONDS ?= 120
soak: $(STAMP)
	$(BIN)/python -m bench.soak --seconds $(SOAK_SECONDS)

# The Lambda runtime: Python 3.12 on arm64 (serverless.yml); wheels only, no compiler, no AWS credentials.
LAMBDA_PLATFORM ?= manylinux2014_aarch64
# PARQUET=1 puts pyarrow in the package for Parquet loads (about 180 MB more unzipped; see README).
PARQUET ?=
PYARROW := pyarrow>=15,<27
LAMBDA_EXTRA := $(if $(PARQUET),'$(PYARROW)',)
node_modules/.installed: package.json
	npm install --no-audit --no-fund --loglevel=error
	touch node_modules/.installed

build/srdb-lambda.zip: lambda-requirements.txt $(STAMP) $(shell find shared worker reaper producer api -name '*.py' -o -name '*.html')
	rm -rf build/lambda build/srdb-lambda.zip
	$(BIN)/python -m pip install --quiet --no-warn-conflicts --target build/lambda --platform $(LAMBDA_PLATFORM) \
		--implementation cp --python-version 3.12 --only-binary=:all: -r lambda-requirements.txt $(LAMBDA_EXTRA)
	cp -r shared worker reaper producer api build/lambda/
	find build/lambda -name __pycache__ -prune -exec rm -rf {} +
	$(BIN)/python -c "import shutil; shutil.make_archive('build/srdb-lambda', 'zip', 'build/lambda')"

package: node_modules/.installed build/srdb-lambda.zip
	AWS_ACCESS_KEY_ID=$${AWS_ACCESS_KEY_ID:-none} AWS_SECRET_ACCESS_KEY=$${AWS_SECRET_ACCESS_KEY:-none} \
		SLS_TELEMETRY_DISABLED=1 SLS_NOTIFICATIONS_MODE=off npx serverless package --stage $${STAGE:-dev} \
		--region $${REGION:-us-east-1}

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) .srdb .pytest_cache .mypy_cache .ruff_cache *.egg-info build .serverless \
		node_modules
