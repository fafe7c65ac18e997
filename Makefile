# Two commands on a fresh Debian 12 machine: `make demo` and `make test`.
# Each installs what is missing (Debian packages, the venv, the build) first.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
BUILD := build/cmake
JOBS ?= $(shell nproc)
export CNNVIZ_DATA ?= $(abspath ../shared/data)

.PHONY: deps venv build install test test-cpp test-consumer test-python demo bench clean kernel jupyter notebook \
	fuzz test-fuzz test-asan

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


# The fuzz smoke runs where clang is installed (scripts/install-deps.sh adds it).
CLANGXX ?= $(shell command -v clang++-14 || command -v clang++)
test: test-cpp test-consumer test-python $(if $(CLANGXX),test-fuzz)

# libFuzzer + ASan + UBSan over the image decoder (tests/fuzz/fuzz_decode.cpp: the checks
# of src/stb_decode.hpp and stb_image compiled with the sanitizers). `make fuzz` runs
# FUZZ_TIME seconds from the committed corpus (new inputs go to build/fuzz/corpus) and
# writes build/fuzz/last_run.log; `make test-fuzz` is the short smoke of `make test`: every
# regression input once, then FUZZ_RUNS executions over the corpus.
FUZZ_BIN := build/fuzz/fuzz_decode
FUZZ_TIME ?= 300
FUZZ_RUNS ?= 20000
FUZZ_OPTS := -dict=tests/fuzz/decode.dict -rss_limit_mb=2560 -max_len=65536 -timeout=20 -print_final_stats=1
export UBSAN_OPTIONS ?= print_stacktrace=1:halt_on_error=1

# stb_image's JPEG bit reader shifts by 24 - code_bits, and code_bits goes negative on corrupt
# entropy-coded data (stb_image.h, stbi__grow_buffer_unsafe): a formal UB in the library, not
# in cnnviz, whose x86 result is a masked shift (garbage bits, no memory access). Excluded so
# the smoke reports cnnviz's own findings; the input is kept in tests/fuzz/regressions and the
# finding in docs/reliability.md.
FUZZ_UB_EXCLUDE := -fno-sanitize=shift-exponent
$(FUZZ_BIN): tests/fuzz/fuzz_decode.cpp src/stb_decode.hpp Makefile
	@mkdir -p $(dir $@)
	$(CLANGXX) -std=c++17 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
	  $(FUZZ_UB_EXCLUDE) -I/usr/include/stb tests/fuzz/fuzz_decode.cpp -o $@

fuzz: deps $(FUZZ_BIN)
	@mkdir -p build/fuzz/corpus build/fuzz/artifacts
	set -o pipefail; $(FUZZ_BIN) $(FUZZ_OPTS) -max_total_time=$(FUZZ_TIME) -artifact_prefix=build/fuzz/artifacts/ \
	  build/fuzz/corpus tests/fuzz/corpus 2>&1 | tee build/fuzz/last_run.log | grep -v '^#[0-9]'

test-fuzz: $(FUZZ_BIN)
	@rm -rf build/fuzz/smoke && mkdir -p build/fuzz/smoke
	$(FUZZ_BIN) tests/fuzz/regressions/* > build/fuzz/regressions.log 2>&1 || (cat build/fuzz/regressions.log; exit 1)
	$(FUZZ_BIN) $(FUZZ_OPTS) -runs=$(FUZZ_RUNS) -seed=1 -artifact_prefix=build/fuzz/smoke/ \
	  build/fuzz/smoke tests/fuzz/corpus > build/fuzz/smoke.log 2>&1 || (tail -50 build/fuzz/smoke.log; exit 1)
	@grep -E "^stat::number_of_executed_units|Done" build/fuzz/smoke.log | tail -2

# The C++ tests and the Python tests against a build with AddressSanitizer and UBSan (gcc,
# as LibTorch); Python itself is not instrumented, so libasan is preloaded and leaks are
# not reported (the interpreter's own allocations would drown them). Not part of `make test`.
ASAN_BUILD := build/asan
ASAN_FLAGS := -g1 -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
test-asan: venv
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Release -DCNNVIZ_BUILD_BENCHMARKS=OFF \
	  -DCMAKE_CXX_FLAGS="$(ASAN_FLAGS)" -DCMAKE_SHARED_LINKER_FLAGS="-fsanitize=address,undefined" \
	  -DCMAKE_MODULE_LINKER_FLAGS="-fsanitize=address,undefined" -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" \
	  -DCNNVIZ_PYTHON_EXECUTABLE=$(abspath $(PY)) -DPython3_EXECUTABLE=$(abspath $(PY))
	cmake --build $(ASAN_BUILD) -j $(JOBS)
	cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=0 ctest --output-on-failure -j $(JOBS)
	cd tests/python && LD_PRELOAD="$$(gcc -print-file-name=libasan.so) $$(gcc -print-file-name=libubsan.so)" \
	  ASAN_OPTIONS=detect_leaks=0:protect_shadow_gap=0 CNNVIZ_C_DIR=$(abspath $(ASAN_BUILD))/python/cnnviz \
	  PYTHONPATH=$(abspath python) ../../$(PY) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS) .

demo: install jupyter
	$(PY) examples/demo.py --out out

bench: install
	bash benchmarks/run_all.sh

clean:
	rm -rf build out python/cnnviz.egg-info
