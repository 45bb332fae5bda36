# Two entry points for a fresh machine; each bootstraps .venv itself.
#   make demo  - trains ProGAN on the embedded synthetic dataset (a few minutes on 2 CPU cores)
#   make test  - the full test suite (TensorFlow backend, then the layer tests on JAX)
#   make lint  - ruff check (configured in pyproject.toml)
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
EXTRAS ?= test,jax

.PHONY: demo test lint venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[$(EXTRAS)]"
	touch $@

DEMO_DATA := data/synthetic-32

demo: $(STAMP)
	test -f $(DEMO_DATA)/manifest.json || $(PY) -m datasets.build --source=synthetic --output_dir=$(DEMO_DATA) --resolution=32 --num_images=4000
	$(PY) main.py --flagfile=experiments/demo.flags

test: $(STAMP)
	$(PY) -m pytest -q -n 2 --durations=15 tests
	KERAS_BACKEND=jax $(PY) -m pytest -q -p no:cacheprovider tests/test_layers.py -m "not tf_only"

lint: $(STAMP)
	$(PY) -m ruff check .

clean:
	rm -rf $(VENV) runs data
