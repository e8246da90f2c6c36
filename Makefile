# Two entry points (see README): `make demo` runs the main job, `make test` runs the tests.
# Each installs whatever is missing into .venv the first time.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SPEC ?= pipelines/demo.yaml

# Debian packages the tests run for real: Prometheus + promtool, Alertmanager, and wrk for benchmarks.
SYSTEM_PACKAGES := prometheus prometheus-alertmanager wrk
SYSTEM_BINARIES := prometheus promtool prometheus-alertmanager wrk

.PHONY: demo test lint install sysdeps clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch 2.13.0 is the CPU build (constraints.txt); an unpinned torch would pull CUDA wheels.
	$(BIN)/pip install -q -c constraints.txt torch==2.13.0
	$(BIN)/pip install -q -c constraints.txt -e ".[all,test]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/mlplat demo $(SPEC)

# Installs the Debian packages when run as root and any is missing; otherwise says what to install.
sysdeps:
	@missing=""; for b in $(SYSTEM_BINARIES); do command -v $$b > /dev/null || missing="$$missing $$b"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing $(SYSTEM_PACKAGES) (missing:$$missing)"; \
	    DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(SYSTEM_PACKAGES) > /dev/null; \
	  else echo "missing:$$missing -- install with: sudo apt-get install $(SYSTEM_PACKAGES)" >&2; exit 1; fi; \
	fi

# ruff (style, imports, bug patterns) and mypy (types); settings live in pyproject.toml.
lint: $(STAMP)
	$(BIN)/ruff check platform plugins tests benchmarks
	$(BIN)/mypy -p mlplat -p mlplat_plugins

test: $(STAMP) sysdeps
	$(BIN)/python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) runs .pytest_cache
