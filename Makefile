# kvtile - build, test, demo, sanitizers, benchmarks.
# Dependencies (Debian 12): liburing-dev liblz4-dev libopenblas-dev
# libpcre2-dev libxxhash-dev libjansson-dev (JSON reading and string encoding,
# tools/json.c and cli_json_str) pkg-config, python3 (tests/test_install
# runs examples/score.py) (scripts/deps.sh installs them).

CC      ?= cc
BUILD   ?= build
OPT     ?= -O2 -g
# One binary for every x86-64 host: code outside the kernels is built for
# the x86-64-v2 baseline; the kernel files of each instruction set
# (engine/mm_kern.h) are built with that set's flags and chosen at run
# time from cpuid (base/cpu.h). `make NATIVE=1` builds everything else
# for this host's CPU instead (the kernel sets are still built and
# dispatched; the baseline code is not portable then).
ARCH    ?= -march=x86-64-v2 -mtune=generic
ifdef NATIVE
ARCH    = -march=native
endif
override CFLAGS += -std=c11 -Wall -Wextra -Wshadow -Wstrict-prototypes -Wundef \
                   -D_GNU_SOURCE -I. -I/usr/include/x86_64-linux-gnu/openblas-pthread \
                   $(OPT) $(ARCH) -pthread -fPIC
ifdef CI
override CFLAGS += -Werror
endif
LDLIBS  = -lopenblas -luring -llz4 -lpcre2-8 -lxxhash -ljansson -lm -pthread

# the kernel files, each with its instruction set's flags; mm_x8.c and
# attn_kern.c twice
MM_KERN   := mm_portable mm_avx2 mm_x8_avx2 mm_gemm2 mm_avx512 mm_x8_avx512 mm_gemm512 \
             attn_kern_avx2 attn_kern_avx512
MM_V3     := -march=x86-64-v3
MM_V4     := -march=x86-64-v4 -mavx512vnni
MM_FLAGS_mm_portable  := -march=x86-64-v2
MM_FLAGS_mm_avx2      := $(MM_V3)
MM_FLAGS_mm_x8_avx2   := $(MM_V3) -DMM_X8_SET=avx2
MM_FLAGS_mm_gemm2     := $(MM_V3)
MM_FLAGS_mm_avx512    := $(MM_V4)
MM_FLAGS_mm_x8_avx512 := $(MM_V4) -DMM_X8_SET=avx512
MM_FLAGS_mm_gemm512   := $(MM_V4) -mavx512bf16
MM_SRC_mm_x8_avx2     := engine/mm_x8.c
MM_SRC_mm_x8_avx512   := engine/mm_x8.c
MM_FLAGS_attn_kern_avx2   := $(MM_V3) -DATTN_SET=avx2
MM_FLAGS_attn_kern_avx512 := $(MM_V4) -DATTN_SET=avx512
MM_SRC_attn_kern_avx2     := engine/attn_kern.c
MM_SRC_attn_kern_avx512   := engine/attn_kern.c
# the tiles' checksums, also built for the avx2 set (kvstore/tile_hash.h)
$(BUILD)/kvstore/tile_hash_avx2.o: override CFLAGS += $(MM_V3)
LIB_SRC   := $(wildcard base/*.c) $(wildcard io/*.c) $(wildcard kvstore/*.c) \
             $(filter-out engine/mm_%.c engine/attn_kern.c,$(wildcard engine/*.c)) $(wildcard api/*.c)
TOOL_SRC  := $(wildcard tools/*.c)
TEST_SRC  := $(wildcard tests/test_*.c)
BENCH_SRC := $(wildcard bench/*.c)
# `kvtile iobench`'s parts the benches share (not in the library): the
# synthetic cache writer and the raw device probe
BENCHLIB_OBJ := $(BUILD)/tools/synth.o $(BUILD)/tools/probe.o
TESTLIB_SRC := $(filter-out $(TEST_SRC),$(wildcard tests/*.c))

LIB_OBJ   := $(LIB_SRC:%.c=$(BUILD)/%.o) $(MM_KERN:%=$(BUILD)/engine/%.o)
TOOL_OBJ  := $(TOOL_SRC:%.c=$(BUILD)/%.o)
CLI_OBJ   := $(filter-out $(BUILD)/tools/kvtile.o,$(TOOL_OBJ))
TESTLIB_OBJ := $(TESTLIB_SRC:%.c=$(BUILD)/%.o)
TEST_BIN  := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
BENCH_BIN := $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)

.PHONY: all test demo asan ubsan tsan bench fuzz clean deps lib install
# keep object files of tests and benches (they are intermediates of the
# pattern rules) so a second `make` has nothing to do
.SECONDARY:

all: $(BUILD)/kvtile $(TEST_BIN) $(BENCH_BIN) lib

# every object is rebuilt when the compiler flags change (e.g. -fPIC
# added); -Werror changes no object
FLAGS_NOW = $(CC) $(filter-out -Werror,$(CFLAGS))
$(BUILD)/cflags: FORCE
	@mkdir -p $(BUILD)
	@echo '$(FLAGS_NOW)' | cmp -s - $@ || echo '$(FLAGS_NOW)' > $@

$(BUILD)/%.o: %.c $(BUILD)/cflags
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

# (a static pattern rule: only these targets, never a .d file's remake;
# secondary expansion finds mm_x8.c for both of its objects)
.SECONDEXPANSION:
$(MM_KERN:%=$(BUILD)/engine/%.o): $(BUILD)/engine/%.o: $$(or $$(MM_SRC_$$*),engine/$$*.c) $(BUILD)/cflags
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(MM_FLAGS_$*) -MMD -MP -c $< -o $@

$(BUILD)/libkvt.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/kvtile: $(TOOL_OBJ) $(BUILD)/libkvt.a
	$(CC) $(CFLAGS) $^ -o $@ $(LDLIBS)

# libkvtile: the engine as a library (api/kvtile.h). Every object is
# compiled -fPIC; the shared library exports only kvtile_* (a version
# script) and is named by the header's version, soname by its major.
VERSION_PART = $(shell sed -n 's/^\#define KVTILE_VERSION_$(1) \([0-9]*\)$$/\1/p' api/kvtile.h)
VMAJOR  := $(call VERSION_PART,MAJOR)
VERSION := $(VMAJOR).$(call VERSION_PART,MINOR).$(call VERSION_PART,PATCH)
SONAME  := libkvtile.so.$(VMAJOR)
PREFIX  ?= /usr/local
DESTDIR ?=
# pkg-config: what a static link needs besides the archive
PC_PRIVATE := $(LDLIBS) -L/usr/lib/x86_64-linux-gnu/openblas-pthread

lib: $(BUILD)/libkvtile.so.$(VERSION) $(BUILD)/libkvtile.a $(BUILD)/kvtile.pc $(BUILD)/kvtile.1

# The static archive holds one object: the library partially linked, every
# global symbol but kvtile_* made local, so a program that links it cannot
# clash with its internal names (pool_create, rope_prepare, ...), as the
# shared library's version script does for dynamic links.
$(BUILD)/libkvtile.a: $(LIB_OBJ) Makefile
	@rm -f $@ $(BUILD)/libkvtile-r.o
	$(LD) -r -o $(BUILD)/libkvtile-r.o $(LIB_OBJ)
	objcopy --wildcard --keep-global-symbol='kvtile_*' $(BUILD)/libkvtile-r.o $(BUILD)/libkvtile.o
	ar rcs $@ $(BUILD)/libkvtile.o
	@rm -f $(BUILD)/libkvtile-r.o

$(BUILD)/libkvtile.so.$(VERSION): $(LIB_OBJ) api/libkvtile.map
	$(CC) $(CFLAGS) -shared -Wl,-soname,$(SONAME) -Wl,--version-script=api/libkvtile.map \
	    -Wl,--no-undefined $(LIB_OBJ) -o $@ $(LDLIBS)
	ln -sf libkvtile.so.$(VERSION) $(BUILD)/$(SONAME)
	ln -sf $(SONAME) $(BUILD)/libkvtile.so

# (rebuilt when PREFIX changes: the file records it)
$(BUILD)/kvtile.pc: api/kvtile.pc.in api/kvtile.h FORCE
	@mkdir -p $(dir $@)
	@sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(VERSION)|' \
	    -e 's|@PRIVATE@|$(PC_PRIVATE)|' api/kvtile.pc.in > $@.tmp
	@if cmp -s $@.tmp $@; then rm $@.tmp; else mv $@.tmp $@; fi

# the man page from the option tables --help prints (kvtile --man)
$(BUILD)/kvtile.1: $(BUILD)/kvtile
	$(BUILD)/kvtile --man > $@.tmp && mv $@.tmp $@

install: $(BUILD)/kvtile lib
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/include \
	    $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/share/man/man1
	install -m 755 $(BUILD)/kvtile $(DESTDIR)$(PREFIX)/bin/kvtile
	install -m 644 api/kvtile.h $(DESTDIR)$(PREFIX)/include/kvtile.h
	install -m 755 $(BUILD)/libkvtile.so.$(VERSION) $(DESTDIR)$(PREFIX)/lib/
	ln -sf libkvtile.so.$(VERSION) $(DESTDIR)$(PREFIX)/lib/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(PREFIX)/lib/libkvtile.so
	install -m 644 $(BUILD)/libkvtile.a $(DESTDIR)$(PREFIX)/lib/libkvtile.a
	install -m 644 $(BUILD)/kvtile.pc $(DESTDIR)$(PREFIX)/lib/pkgconfig/kvtile.pc
	install -m 644 $(BUILD)/kvtile.1 $(DESTDIR)$(PREFIX)/share/man/man1/kvtile.1

.PHONY: FORCE
FORCE:

# the CLI's pieces (everything in tools/ but main) for tests of its parts
$(BUILD)/libkvtcli.a: $(CLI_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/tests/%: $(BUILD)/tests/%.o $(TESTLIB_OBJ) $(BUILD)/libkvtcli.a $(BUILD)/libkvt.a
	$(CC) $(CFLAGS) $^ -o $@ $(LDLIBS)

$(BUILD)/bench/%: $(BUILD)/bench/%.o $(BENCHLIB_OBJ) $(BUILD)/libkvt.a
	$(CC) $(CFLAGS) $^ -o $@ $(LDLIBS)

deps:
	sh scripts/deps.sh

# The README's test command: installs what is missing, builds, runs every
# test program under a timeout, prints "N passed, N failed".
test: deps
	$(MAKE) all
	sh tests/run.sh $(BUILD)

# The main job on the bundled model and text: the New Testament (353,295
# tokens) in 256-token windows (reference: 19.4157, models/README.md), then
# 4096-token windows (16x the trained context, YaRN) whose KV tiles stream
# from disk through io_uring while attention runs.
demo: deps
	$(MAKE) $(BUILD)/kvtile
	$(BUILD)/kvtile info models/tiny-kjv-f32.gguf
	$(BUILD)/kvtile ppl models/tiny-kjv-f32.gguf -f tests/data/kjv-nt.txt -c 256
	@echo "(independent reference, llama.cpp: PPL = 19.4157 +/- 0.11394)"
	$(BUILD)/kvtile ppl models/tiny-kjv-f32.gguf -f tests/data/kjv-nt.txt -c 4096 --chunks 4 \
	    --rope-scaling yarn --rope-scale 16 --cache-type f16 --codec shuf-lz4

# Sanitizer builds run the same tests; KVT_TEST_QUICK skips the whole-text
# perplexity references (numerics, covered by `make test`), which would
# take most of an hour under instrumentation.
SAN_ENV = KVT_TEST_QUICK=1
asan:
	$(SAN_ENV) $(MAKE) BUILD=build-asan OPT="-O1 -g -fsanitize=address -fno-omit-frame-pointer" test
ubsan:
	$(SAN_ENV) $(MAKE) BUILD=build-ubsan OPT="-O1 -g -fsanitize=undefined -fno-sanitize-recover=undefined" test
tsan:
	$(SAN_ENV) $(MAKE) BUILD=build-tsan OPT="-O1 -g -fsanitize=thread" test

# Fuzz targets (tests/fuzz/fuzz_*.c): libFuzzer binaries with clang
# (`make fuzz`), and plain replay programs (KVT_REPLAY) built with `all`,
# which test_fuzz runs over each corpus in tests/fuzz/corpus/NAME/.
FUZZ_SRC := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_REPLAY := $(FUZZ_SRC:tests/fuzz/%.c=$(BUILD)/fuzz/%-replay)
FUZZ_LIB := base/kvt.c base/cpu.c base/numfmt.c io/io.c engine/gguf.c engine/tok.c engine/tok_encode.c engine/tok_special.c engine/pretok.c engine/rope.c kvstore/tile.c kvstore/tile_hash_avx2.c $(wildcard kvstore/codec*.c) \
            kvstore/kvs.c kvstore/kvs_file.c kvstore/kvs_read.c kvstore/journal.c tools/json.c tools/batch_cache.c
all: $(FUZZ_REPLAY)
$(BUILD)/fuzz/%-replay: tests/fuzz/%.c tests/fuzz/replay.h $(BUILD)/libkvtcli.a $(BUILD)/libkvt.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -DKVT_REPLAY $< $(BUILD)/libkvtcli.a $(BUILD)/libkvt.a -o $@ $(LDLIBS)
fuzz:
	@mkdir -p $(BUILD)/fuzz
	for f in $(FUZZ_SRC); do n=$$(basename $$f .c); \
	  clang -std=c11 -O1 -g -D_GNU_SOURCE -I. -march=native -fsanitize=fuzzer,address,undefined $$f $(FUZZ_LIB) \
	    -o $(BUILD)/fuzz/$$n $(LDLIBS) || exit 1; \
	done
	@echo "run: nice -n 19 $(BUILD)/fuzz/fuzz_tile -max_total_time=600 NEWDIR tests/fuzz/corpus/fuzz_tile"

bench: all
	sh bench/run.sh $(BUILD)

clean:
	rm -rf build build-asan build-ubsan build-tsan

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
