# Two commands do everything on a fresh Debian 12 machine (Python 3.11, root or sudo):
#   make demo   set up, then generate, verify, look at and train on small data sets
#   make test   set up, then run the test suite
# Both are idempotent: they create or refresh .venv and install only what is missing.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.fdsl-installed
DEMO   := demo
# Mesa's EGL for headless pyrender (Mesa's CPU rasterizer here, NVIDIA's EGL on a GPU machine).
APT_PACKAGES := libegl1 libgl1-mesa-dri libegl-mesa0 libgl1
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test setup system-packages lint bench gpu-check wheelhouse wheelhouse-gpu-node install-offline clean

setup: system-packages $(STAMP)

system-packages:
	@missing=""; $(PYTHON) -c "import ensurepip, venv" 2>/dev/null || missing=" python3-venv"; \
	for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch is pinned to the CPU wheel that installs in seconds; any other spec pulls GBs of CUDA.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

test: setup
	PYOPENGL_PLATFORM=egl $(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check .

bench: setup
	for b in benchmarks/bench_*.py; do PYOPENGL_PLATFORM=egl $(BIN)/python $$b || exit 1; done
	$(BIN)/python benchmarks/collect_results.py

# On a CUDA machine (with a CUDA build of torch): GPU tests, kernels against the CPU, on-the-fly
# generation, training, DDP and EGL render throughput in under 8 minutes, into
# benchmarks/results/gpu.md and gpu.json. Without a GPU: one line, exit 3. OFFLINE=1 installs from
# WHEELHOUSE into $(OFFLINE_VENV) (install-offline) instead of `setup`, which needs the network.
ifeq ($(OFFLINE),1)
gpu-check: install-offline
	PYOPENGL_PLATFORM=egl $(OFFLINE_VENV)/bin/python benchmarks/gpu_check.py
else
gpu-check: setup
	PYOPENGL_PLATFORM=egl $(BIN)/python benchmarks/gpu_check.py
endif

# Offline nodes (README: "Cluster / offline GPU node"). On a networked machine,
#   make wheelhouse [PYVER=3.12] [WHEELHOUSE=wheelhouse] [SKIP="numpy numba ..."]
# builds fdsl's wheel and manylinux x86_64 wheels of everything it needs but torch (tools/wheelhouse.py);
# SKIP leaves out what the node has. `make wheelhouse-gpu-node` is the one for our GPU test machines
# (Python 3.12, GPU_NODE_SKIP). On the node, whose python3 has a CUDA torch:
#   make install-offline WHEELHOUSE=DIR   (a venv that sees python3's torch; pip --no-index)
PYVER ?= $(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])')
WHEELHOUSE ?= wheelhouse
SKIP ?=
# More requirements (and version limits) for the wheelhouse, space-separated.
ALSO ?= pytest
GPU_NODE_SKIP := numpy numba llvmlite h5py matplotlib pillow pyyaml tqdm safetensors scipy scikit-learn \
  numba-cuda cuda-bindings cuda-core cuda-pathfinder networkx imageio six packaging pytest pluggy iniconfig pygments
# hdf5plugin 5+ bundles more compression filters (46 MB a wheel); 4.4 (42 MB) has the LZ4 and Zstd
# filters fdsl writes and reads, and keeps the GPU node's wheelhouse under 60 MB.
GPU_NODE_ALSO := pytest hdf5plugin<5
OFFLINE_VENV := .venv-offline

wheelhouse: $(BIN)/python
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python tools/wheelhouse.py --python-version $(PYVER) --out $(WHEELHOUSE) --skip "$(SKIP)" --also "$(ALSO)"

wheelhouse-gpu-node:
	$(MAKE) wheelhouse PYVER=3.12 SKIP="$(GPU_NODE_SKIP)" ALSO="$(GPU_NODE_ALSO)"

install-offline:
	@[ -f "$(WHEELHOUSE)/requirements.txt" ] || { echo "install-offline: $(WHEELHOUSE) is no wheelhouse;" \
	  "make one with 'make wheelhouse' on a machine with network (README: Cluster / offline GPU node)" >&2; exit 2; }
	[ -x $(OFFLINE_VENV)/bin/python ] || $(PYTHON) -m venv --system-site-packages $(OFFLINE_VENV)
	$(OFFLINE_VENV)/bin/python -m pip install -q --no-index --find-links $(WHEELHOUSE) \
	  -r $(WHEELHOUSE)/requirements.txt -e .

# --overwrite: a demo folder made by an older fdsl is replaced; one made with these settings resumes.
demo: setup
	@echo "== FractalDB: 10 classes x 100 images =="
	$(BIN)/gen-fractal --db fractaldb --classes 10 --instances 100 --overwrite --out $(DEMO)/fractaldb
	$(BIN)/inspect-shards $(DEMO)/fractaldb --verify --grid $(DEMO)/fractaldb_grid.png --per-class 10
	@echo "== ExFractalDB: 5 classes x 4 3-D variants x 10 views =="
	$(BIN)/gen-fractal --db exfractaldb --classes 5 --instances-3d 4 --views 10 --overwrite --out $(DEMO)/exfractaldb
	$(BIN)/inspect-shards $(DEMO)/exfractaldb --verify --grid $(DEMO)/exfractaldb_grid.png --per-class 10
	@echo "== RCDB: 5 classes x 40 images =="
	$(BIN)/gen-fractal --db rcdb --classes 5 --instances 40 --overwrite --out $(DEMO)/rcdb
	$(BIN)/inspect-shards $(DEMO)/rcdb --verify --grid $(DEMO)/rcdb_grid.png --per-class 10
	@echo "== LineDB: 5 classes (16, 32, ... 80 lines) x 10 images =="
	$(BIN)/gen-fractal --db linedb --classes 5 --instances 10 --image-size 128 --overwrite --out $(DEMO)/linedb
	$(BIN)/inspect-shards $(DEMO)/linedb --verify --grid $(DEMO)/linedb_grid.png --per-class 10
	@echo "== Renders: procedural set, 9 classes x 3 models x 100 views, with silhouette area =="
	PYOPENGL_PLATFORM=egl $(BIN)/render-shapenet --out $(DEMO)/renders --models-per-class 3 --views 100 --image-size 128 --overwrite
	$(BIN)/inspect-shards $(DEMO)/renders --verify --grid $(DEMO)/renders_grid.png --sort-by area --per-class 12
	$(BIN)/inspect-shards $(DEMO)/renders --hist area $(DEMO)/renders_area_hist.png
	@echo "== Pruning study on the renders: random / min-area / max-area, 2 sizes x 2 splits (a few minutes) =="
	$(BIN)/run-study pruning --data $(DEMO)/renders --preset demo --jobs 2 --overwrite --out $(DEMO)/study-pruning
	@echo "== Pre-train ResNet-18 on the demo FractalDB (about a minute on CPU) =="
	@# resize_ratio 1.15 keeps the whole fractal in the 64 px crop: the paper's 224-of-362 crops
	@# (the recipe's default) learn little in 5 short CPU epochs.
	$(BIN)/train-classifier --data $(DEMO)/fractaldb --model resnet18 --recipe fractaldb-resnet --epochs 5 \
	  --batch-size 32 --schedule cosine --image-size 64 --set resize_ratio=1.15 \
	  --overwrite --out $(DEMO)/runs/fractaldb-resnet18
	@echo "== Fine-tune it on the demo renders (tested on held-out models) =="
	$(BIN)/train-classifier --data $(DEMO)/renders --recipe finetune --model resnet18 \
	  --finetune-from $(DEMO)/runs/fractaldb-resnet18/checkpoint.pt --epochs 5 --batch-size 64 --image-size 64 \
	  --split-by model_id --overwrite --out $(DEMO)/runs/renders-finetune
	@echo "Contact sheets, histograms and training curves are in $(DEMO)/"

clean:
	rm -rf $(DEMO)
