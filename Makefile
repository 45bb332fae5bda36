# Two entry points for a fresh machine; each bootstraps .venv itself.
#   make demo  - trains ProGAN on the embedded synthetic faces (about 3 minutes on 2 idle CPU cores), ends with SWD
#   make test  - the full test suite (TensorFlow backend, then the layer tests on JAX)
#   make lint  - ruff format --check and ruff check (pyproject.toml); part of make test
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
EXTRAS ?= test,jax

.PHONY: demo demo-data test lint venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[$(EXTRAS)]"
	touch $@

DEMO_DATA := data/synthetic-32
# 4000 synthetic faces: the 42-kimg demo shows each about 10 times; building them takes seconds.
DEMO_IMAGES := 4000

# The demo trains, then scores its EMA generator with SWD (800 images per side) against its dataset.
demo: $(STAMP)
	@$(MAKE) --no-print-directory demo-data PY=$(PY)
	$(PY) main.py --flagfile=experiments/demo.flags
	$(PY) main.py --mode=evaluate --flagfile=experiments/demo.flags --metrics=swd --num_images=800
	@echo "samples: runs/demo/samples/reals.png (the data) and $$(ls runs/demo/samples/fakes-ema-*.png | tail -n 1)"

demo-data: $(DEMO_DATA)/manifest.json

$(DEMO_DATA)/manifest.json:
	$(PY) -m datasets.build --source=synthetic --output_dir=$(DEMO_DATA) --resolution=32 --num_images=$(DEMO_IMAGES)

test: lint
	$(PY) -m pytest -q -n 2 --durations=15 tests
	KERAS_BACKEND=jax $(PY) -m pytest -q -p no:cacheprovider tests/test_layers.py -m "not tf_only"

lint: $(STAMP)
	$(PY) -m ruff format --check --quiet . || (echo "ruff: files not formatted; run: $(PY) -m ruff format ." && exit 1)
	$(PY) -m ruff check .

clean:
	rm -rf $(VENV) runs data
