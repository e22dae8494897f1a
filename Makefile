# Two entry points (see README): `make demo` and `make test`. Both set up .venv first.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
MODEL ?= poco-cliff
PRECISION ?= fp16
OUT ?= build/$(MODEL)-$(PRECISION)

.PHONY: setup demo test lint bench clean serve-venv

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	# the CPU build of torch; a bare `torch` would pull a multi-GB CUDA build
	$(BIN)/python -m pip install -q "torch==2.13.0"
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

# the main job: checkpoint (random weights unless CHECKPOINT=...) → build folder → predictions on a photo
demo: setup
	$(BIN)/hpsedge export build --model $(MODEL) --precision $(PRECISION) --out $(OUT) --force \
		$(if $(CHECKPOINT),--checkpoint $(CHECKPOINT),)
	$(BIN)/hpsedge run $(OUT) --image examples/astronaut.jpg --out $(OUT)-run --force
	@echo "overlay picture: $(OUT)-run/astronaut_overlay.png"

# `hpsedge serve` runs in its own venv: PyTriton (bundled tritonserver) pins numpy<2, the dev venv has numpy 2
SERVE_VENV ?= .venv-serve
serve-venv: $(SERVE_VENV)/.installed

$(SERVE_VENV)/.installed: pyproject.toml
	$(PY) -m venv $(SERVE_VENV)
	$(SERVE_VENV)/bin/python -m pip install -q -e ".[serve,ort,cli]"
	touch $@

# two pytest-xdist workers, whole files each (tests/conftest.py starts the long full-size builds first); the 25
# slowest tests are listed at the end. HPSEDGE_TEST_SEED=N re-runs the suite on other random weights.
PYTEST_WORKERS ?= 2
test: setup serve-venv
	HPSEDGE_SERVE_PYTHON=$(CURDIR)/$(SERVE_VENV)/bin/python $(BIN)/python -m pytest -q \
		-n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder --durations=25
	$(BIN)/ruff check src tests benchmarks

lint: setup
	$(BIN)/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) $(SERVE_VENV) build
