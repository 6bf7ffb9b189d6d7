# eaq: the two commands in the README do all set-up: `make demo` and `make test`.
BUILD_DIR    ?= build
SANITIZE_DIR ?= build-sanitize
JOBS         ?= $(shell nproc)
CMAKE_FLAGS  ?=
EAQ          := $(BUILD_DIR)/eaq

.PHONY: all deps build build-sanitize test unit test-sanitize demo format clean

all: build

deps:
	@scripts/install_deps.sh

$(BUILD_DIR)/build.ninja: | deps
	cmake -S . -B $(BUILD_DIR) -G Ninja -DEAQ_WERROR=ON $(CMAKE_FLAGS)

build: deps $(BUILD_DIR)/build.ninja
	cmake --build $(BUILD_DIR) -j $(JOBS)

$(SANITIZE_DIR)/build.ninja: | deps
	cmake -S . -B $(SANITIZE_DIR) -G Ninja -DCMAKE_BUILD_TYPE=Debug -DEAQ_CUDA=OFF \
	  -DEAQ_SANITIZE=ON -DEAQ_WERROR=ON $(CMAKE_FLAGS)

build-sanitize: deps $(SANITIZE_DIR)/build.ninja
	cmake --build $(SANITIZE_DIR) -j $(JOBS)

# The unit tests (GPU tests skip without a GPU), then the same tests under ASan + UBSan.
test: unit test-sanitize

unit: build
	cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS)

test-sanitize: build-sanitize
	cd $(SANITIZE_DIR) && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
	  ctest --output-on-failure -j $(JOBS)

# The main job on the bundled default model.
demo: build
	scripts/demo.sh $(EAQ)

format:
	clang-format -i $$(git ls-files '*.cpp' '*.hpp' '*.cu' '*.cuh')

clean:
	rm -rf $(BUILD_DIR) $(SANITIZE_DIR)
