# eaq: the two commands in the README do all set-up: `make demo` and `make test`.
BUILD_DIR    ?= build
SANITIZE_DIR ?= build-sanitize
JOBS         ?= $(shell nproc)
CMAKE_FLAGS  ?=
EAQ          := $(BUILD_DIR)/eaq

.PHONY: all deps build build-sanitize test unit test-install test-sanitize demo format clean gpu-carry

all: build

deps:
	@scripts/install_deps.sh

$(BUILD_DIR)/build.ninja: | deps
	cmake -S . -B $(BUILD_DIR) -G Ninja -DEAQ_WERROR=ON $(CMAKE_FLAGS)

build: deps $(BUILD_DIR)/build.ninja
	cmake --build $(BUILD_DIR) -j $(JOBS)

$(SANITIZE_DIR)/build.ninja: | deps
	cmake -S . -B $(SANITIZE_DIR) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DEAQ_CUDA=OFF \
	  -DEAQ_SANITIZE=ON -DEAQ_WERROR=ON $(CMAKE_FLAGS)

build-sanitize: deps $(SANITIZE_DIR)/build.ninja
	cmake --build $(SANITIZE_DIR) -j $(JOBS)

# The unit tests (GPU tests skip without a GPU), the installed package used by an example
# program, then the same tests under ASan + UBSan.
test: unit test-install test-sanitize

unit: build
	cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS)

# `cmake --install`, then examples/measure_api built against it with find_package(eaq) and run on
# the CPU with the bundled model.
test-install: build
	rm -rf $(BUILD_DIR)/install $(BUILD_DIR)/example
	cmake --install $(BUILD_DIR) --prefix $(BUILD_DIR)/install > /dev/null
	cmake -S examples/measure_api -B $(BUILD_DIR)/example -G Ninja \
	  -DCMAKE_PREFIX_PATH=$(CURDIR)/$(BUILD_DIR)/install > /dev/null
	cmake --build $(BUILD_DIR)/example
	$(BUILD_DIR)/example/measure_api models/sentiment-distilbert datasets/sentiment-small fp32 cpu 2

test-sanitize: build-sanitize
	cd $(SANITIZE_DIR) && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
	  ctest --output-on-failure -j $(JOBS)

# The main job on the bundled default model.
demo: build
	scripts/demo.sh $(EAQ)

# Hopper binaries for the GPU machine, stripped and gzipped into .carry/bin (git-ignored), where
# bench/gpu/run.sh looks for them (docs/gpu-workflow.md).
GPU_BUILD_DIR ?= build-cuda
CUDA_HOME ?= /usr/local/cuda
gpu-carry: deps
	cmake -S . -B $(GPU_BUILD_DIR) -G Ninja -DEAQ_CUDA_ARCHITECTURES=90 -DEAQ_WERROR=ON
	cmake --build $(GPU_BUILD_DIR) -j $(JOBS)
	mkdir -p .carry/bin
	cp $(GPU_BUILD_DIR)/eaq $(GPU_BUILD_DIR)/eaq_tests $(GPU_BUILD_DIR)/eaq_gemm_bench \
	  $(GPU_BUILD_DIR)/eaq_energy_probe .carry/bin/
	strip .carry/bin/eaq .carry/bin/eaq_tests .carry/bin/eaq_gemm_bench .carry/bin/eaq_energy_probe
	rm -f .carry/bin/*.gz .carry/bin/*.xz
	xz -9e -T2 -f .carry/bin/eaq .carry/bin/eaq_tests .carry/bin/eaq_gemm_bench \
	  .carry/bin/eaq_energy_probe
	# The kernel tracer for run.sh's trace-gpt2 stage, with the CUPTI it was built against.
	g++ -std=c++17 -shared -fPIC -O2 -Wall -Wextra -Werror -I$(CUDA_HOME)/include \
	  tools/kernel_trace.cpp -L$(CUDA_HOME)/lib64 -lcupti -o .carry/bin/libeaq_kernel_trace.so
	cp -L $(CUDA_HOME)/lib64/libcupti.so.13 .carry/bin/
	xz -9 -T2 -f .carry/bin/libcupti.so.13

format:
	clang-format -i $$(git ls-files '*.cpp' '*.hpp' '*.cu' '*.cuh')

clean:
	rm -rf $(BUILD_DIR) $(SANITIZE_DIR)
