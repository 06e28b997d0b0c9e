# giftd: the two commands are `make run` and `make test`; both install what is missing first.
BUILD      ?= build
ASAN_BUILD ?= build-asan
JOBS       ?= $(shell nproc)
ARGS       ?=

.PHONY: all setup build build-asan run test test-fast bench soak clean format

all: build

setup:
	@./scripts/setup.sh

build: setup
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build $(BUILD) -j$(JOBS)

build-asan: setup
	@cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DGIFTD_SANITIZE=ON >/dev/null
	@cmake --build $(ASAN_BUILD) -j$(JOBS)

# giftd --dev with its own private redis-server; Ctrl-C stops both.
run: build
	./$(BUILD)/giftd --dev $(ARGS)

# The whole suite, then the whole suite again under ASan + UBSan.
test: build build-asan
	./scripts/run-tests.sh $(BUILD)
	ASAN_OPTIONS=abort_on_error=1:detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
		./scripts/run-tests.sh $(ASAN_BUILD)

# The suite once, without the sanitizer pass (for quick iterations).
test-fast: build
	./scripts/run-tests.sh $(BUILD)

bench: build
	./bench/run.sh $(BUILD)

# Ten minutes of 15,000 viewers and steady gifts: RSS and p99 every 10 s (bench/soak.sh).
soak: build
	./bench/soak.sh $(BUILD)

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
