# Two commands on a fresh Debian 12 machine: `make demo` and `make test`.
# Each installs what is missing (Debian packages, the venv, the build) first.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
BUILD := build/cmake
JOBS ?= $(shell nproc)
export CNNVIZ_DATA ?= $(abspath ../shared/data)

.PHONY: deps venv build install test test-cpp test-consumer test-python demo bench clean kernel jupyter notebook

deps:
	@bash scripts/install-deps.sh

$(PY): | deps
	/usr/bin/python3 -m venv --system-site-packages $(VENV)

venv: deps $(PY)

build: venv
	# The same interpreter setup.py passes, so `make install` after `make build` only links.
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release -DCNNVIZ_PYTHON_EXECUTABLE=$(abspath $(PY)) -DPython3_EXECUTABLE=$(abspath $(PY))
	cmake --build $(BUILD) -j $(JOBS)

install: build
	CNNVIZ_BUILD_DIR=$(abspath $(BUILD)) $(PY) -m pip install --no-build-isolation --no-deps --quiet .

test-cpp: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

# An out-of-tree program that does find_package(cnnviz) against an installed copy.
test-consumer: build
	cmake --install $(BUILD) --prefix $(abspath build/prefix) > /dev/null
	cmake -S examples/consumer -B build/consumer -DCMAKE_PREFIX_PATH=$(abspath build/prefix) -DCMAKE_BUILD_TYPE=Release $(if $(shell command -v ccache),-DCMAKE_CXX_COMPILER_LAUNCHER=ccache) > /dev/null
	cmake --build build/consumer -j $(JOBS)
	./build/consumer/cnnviz_consumer

test-python: install
	cd tests/python && ../../$(PY) -m pytest -q -p no:cacheprovider .

# The Jupyter kernel "cnnviz" runs this venv's Python (which imports cnnviz). `kernel`
# registers it inside the venv (found by Jupyter run from the venv's Python); `jupyter`
# also registers it for the user, so that Debian's `jupyter notebook` offers it.
kernel: install
	$(PY) -m ipykernel install --sys-prefix --name cnnviz --display-name "Python (cnnviz)" > /dev/null

jupyter: kernel
	$(PY) -m ipykernel install --user --name cnnviz --display-name "Python (cnnviz)"
	@echo "Kernel 'cnnviz' registered. Start Jupyter with: jupyter notebook examples/cnn_visualization.ipynb"

# Executes the cnnviz edition of the notebook headless (nbclient, a kernel on this venv's
# Python); the copy with its figures goes to out/.
notebook: install
	env -u MPLBACKEND $(PY) examples/run_notebook.py examples/cnn_visualization.ipynb out/cnn_visualization.ipynb

test: test-cpp test-consumer test-python

demo: install jupyter
	$(PY) examples/demo.py --out out

bench: install
	bash benchmarks/run_all.sh

clean:
	rm -rf build out python/cnnviz.egg-info
