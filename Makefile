# kvtile - build, test, demo, sanitizers, benchmarks.
# Dependencies (Debian 12): liburing-dev liblz4-dev libopenblas-dev
# libpcre2-dev libxxhash-dev pkg-config (scripts/deps.sh installs them).

CC      ?= cc
BUILD   ?= build
OPT     ?= -O2 -march=native -g
override CFLAGS += -std=c11 -Wall -Wextra -Wshadow -Wstrict-prototypes -Wundef \
                   -D_GNU_SOURCE -I. -I/usr/include/x86_64-linux-gnu/openblas-pthread \
                   $(OPT) -pthread
ifdef CI
override CFLAGS += -Werror
endif
LDLIBS  = -lopenblas -luring -llz4 -lpcre2-8 -lxxhash -lm -pthread

LIB_SRC   := $(wildcard io/*.c) $(wildcard kvstore/*.c) $(wildcard engine/*.c)
TOOL_SRC  := $(wildcard tools/*.c)
TEST_SRC  := $(wildcard tests/test_*.c)
BENCH_SRC := $(wildcard bench/*.c)
TESTLIB_SRC := $(filter-out $(TEST_SRC),$(wildcard tests/*.c))

LIB_OBJ   := $(LIB_SRC:%.c=$(BUILD)/%.o)
TOOL_OBJ  := $(TOOL_SRC:%.c=$(BUILD)/%.o)
TESTLIB_OBJ := $(TESTLIB_SRC:%.c=$(BUILD)/%.o)
TEST_BIN  := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
BENCH_BIN := $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)

.PHONY: all test demo asan ubsan tsan bench clean deps

all: $(BUILD)/kvtile $(TEST_BIN) $(BENCH_BIN)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/libkvt.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/kvtile: $(TOOL_OBJ) $(BUILD)/libkvt.a
	$(CC) $(CFLAGS) $^ -o $@ $(LDLIBS)

$(BUILD)/tests/%: $(BUILD)/tests/%.o $(TESTLIB_OBJ) $(BUILD)/libkvt.a
	$(CC) $(CFLAGS) $^ -o $@ $(LDLIBS)

$(BUILD)/bench/%: $(BUILD)/bench/%.o $(BUILD)/libkvt.a
	$(CC) $(CFLAGS) $^ -o $@ $(LDLIBS)

deps:
	sh scripts/deps.sh

# The README's test command: installs what is missing, builds, runs every
# test program under a timeout, prints "N passed, N failed".
test: deps
	$(MAKE) all
	sh tests/run.sh $(BUILD)

demo: deps
	$(MAKE) all
	$(BUILD)/kvtile ppl models/tiny-kjv-f32.gguf -f tests/data/kjv-nt.txt -c 256

asan:
	$(MAKE) BUILD=build-asan OPT="-O1 -g -fsanitize=address -fno-omit-frame-pointer" test
ubsan:
	$(MAKE) BUILD=build-ubsan OPT="-O1 -g -fsanitize=undefined -fno-sanitize-recover=undefined" test
tsan:
	$(MAKE) BUILD=build-tsan OPT="-O1 -g -fsanitize=thread" test

bench: all
	sh bench/run.sh $(BUILD)

clean:
	rm -rf build build-asan build-ubsan build-tsan

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
