# giftd: the two commands are `make run` and `make test`; both install what is missing first.
BUILD      ?= build
ASAN_BUILD ?= build-asan
FUZZ_BUILD ?= build-fuzz
# make fuzz: seconds per fuzzer, and which fuzzers (empty: all of fuzz/corpus/).
FUZZ_SECONDS ?= 600
FUZZ_TARGETS ?=
JOBS       ?= $(shell nproc)
ARGS       ?=

.PHONY: all setup build build-asan build-fuzz run test test-fast test-fuzz fuzz bench bench-script bench-cluster soak clean format

all: build

setup:
	@./scripts/setup.sh

build: setup
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build $(BUILD) -j$(JOBS)

build-asan: setup
	@cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DGIFTD_SANITIZE=ON >/dev/null
	@cmake --build $(ASAN_BUILD) -j$(JOBS)

# The libFuzzer harnesses of fuzz/ (clang-14; ASan + UBSan; only the harnesses are built).
build-fuzz: setup
	@CC=clang-14 cmake -S . -B $(FUZZ_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DGIFTD_FUZZ=ON \
		-DGIFTD_TESTS=OFF >/dev/null
	@cmake --build $(FUZZ_BUILD) -j$(JOBS) --target fuzzers

# giftd --dev with its own private redis-server; Ctrl-C stops both.
run: build
	./$(BUILD)/giftd --dev $(ARGS)

# The whole suite, then again under ASan + UBSan, then each fuzzer briefly. The second pass
# leaves out the browser tests (they test the overlay's JavaScript; the server paths they use
# run under ASan in the e2e suites), the test of the cluster test kit itself and the gift
# tests run again on a cluster (test_cluster runs the cluster code under ASan), to keep the
# suite near 10 minutes.
test: build build-asan
	./scripts/run-tests.sh $(BUILD)
	ASAN_OPTIONS=abort_on_error=1:detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
		./scripts/run-tests.sh $(ASAN_BUILD) -E 'browser_|testkit_cluster|gifts_cluster'
	@$(MAKE) --no-print-directory test-fuzz

# Each fuzzer for 5 seconds from its seeds (ctest in build-fuzz), when clang-14 can build them.
test-fuzz:
	@if ./scripts/fuzz.sh available; then \
		$(MAKE) --no-print-directory build-fuzz && ./scripts/run-tests.sh $(FUZZ_BUILD); \
	else \
		echo "test-fuzz: skipped: clang-14 cannot build a libFuzzer harness (setup installs it)"; \
	fi

# Each fuzzer for FUZZ_SECONDS (default 10 minutes), one after the other, on a scratch copy of
# its seed corpus (build-fuzz/fuzz-work/); prints executions and coverage.
fuzz: build-fuzz
	./scripts/fuzz.sh run $(FUZZ_BUILD) $(FUZZ_SECONDS) $(FUZZ_TARGETS)

# The suite once, without the sanitizer pass (for quick iterations).
test-fast: build
	./scripts/run-tests.sh $(BUILD)

bench: build
	./bench/run.sh $(BUILD)

# What gift.lua costs Redis per charged gift, in instructions (callgrind): comparable across
# runs on a noisy machine (bench/script_cost.sh; installs valgrind when it is missing).
bench-script: setup
	./bench/script_cost.sh

# The gift path on a private 3-master Redis Cluster next to one Redis: Redis CPU per gift,
# per master, and the split of gifts over the masters (bench/cluster.sh).
bench-cluster: build
	./bench/cluster.sh $(BUILD)

# Ten minutes of 15,000 viewers and steady gifts: RSS and p99 every 10 s (bench/soak.sh).
soak: build
	./bench/soak.sh $(BUILD)

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)
