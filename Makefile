# Two commands for users: `make demo` and `make test`. Both install missing dependencies first.
BUILD ?= build
JOBS ?= $(shell nproc)
CMAKE_ARGS ?=
HOLO = $(BUILD)/launcher/holo

.PHONY: all deps configure build test test-unit sanitize demo docs clean format

all: build

deps:
	@bash scripts/install-deps.sh

configure: deps
	@if [ ! -f $(BUILD)/build.ninja ]; then \
	  cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release $(CMAKE_ARGS); fi

build: configure
	cmake --build $(BUILD) -j $(JOBS)

# The whole suite: unit, mpi, slurm, multinode, slow; gpu tests skip themselves without a GPU.
test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS) $(CTEST_ARGS)

test-unit: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS) -L unit

# The pipeline's tests under AddressSanitizer + UndefinedBehaviorSanitizer, then
# ThreadSanitizer, each in its own build folder (scripts/sanitize.sh; docs/pipeline.md).
sanitize: build
	HOLO_BINARY=$(abspath $(HOLO)) CMAKE_ARGS="$(CMAKE_ARGS)" bash scripts/sanitize.sh address
	HOLO_BINARY=$(abspath $(HOLO)) CMAKE_ARGS="$(CMAKE_ARGS)" bash scripts/sanitize.sh thread

# libFuzzer targets (tests/fuzz) under AddressSanitizer + UndefinedBehaviorSanitizer, built with
# clang in build-fuzz/; each runs FUZZ_SECONDS from its corpus, any crash fails
# (tests/fuzz/run.sh; docs/fuzzing.md). FUZZ_MERGE=1 adds new inputs to the committed corpus.
FUZZ_SECONDS ?= 60
FUZZ_MERGE ?= 0
.PHONY: fuzz
fuzz: deps
	FUZZ_SECONDS=$(FUZZ_SECONDS) FUZZ_MERGE=$(FUZZ_MERGE) CMAKE_ARGS="$(CMAKE_ARGS)" bash tests/fuzz/run.sh

demo: build
	bash scripts/demo.sh $(HOLO)

# Regenerates the docs that are printed by holo itself.
docs: build
	$(HOLO) recipe doc --markdown > docs/recipe-keys.md.body
	{ cat docs/recipe-keys.head.md; cat docs/recipe-keys.md.body; } > docs/recipe-keys.md
	rm -f docs/recipe-keys.md.body
	$(HOLO) env --markdown > docs/env.md.body
	{ cat docs/env.head.md; cat docs/env.md.body; } > docs/env.md
	rm -f docs/env.md.body

format:
	git ls-files '*.h' '*.cc' | xargs clang-format -i

clean:
	rm -rf $(BUILD)
