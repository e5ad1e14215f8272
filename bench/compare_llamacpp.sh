#!/bin/sh
# compare_llamacpp.sh - kvtile against llama.cpp on the same generated GGUF
# files of the TinyLlama-1.1B shape (random weights, bench/gen_model).
#
#   LLAMA_CPP_DIR=/path/to/llama.cpp/build/bin \
#   [LLAMA_CPP_AVX2_DIR=/path/to/llama.cpp/build-avx2/bin] \
#   sh bench/compare_llamacpp.sh [BUILD]
#
# Needs llama-bench and llama-perplexity in LLAMA_CPP_DIR (without them
# the script says so and exits 0; `make bench` does not run it). Writes
# tl-f16.gguf with gen_model, the other types with llama-quantize
# (LLAMA_QUANTIZE, default LLAMA_CPP_DIR/llama-quantize; only for files
# not yet there), into KVT_BENCH_DIR (default /tmp/kvt-compare; kept for
# the next run; files already there are used as they are).
#
# Kernel sets: kvtile's default set (KVT_CPU, else the best the host has)
# is paired with LLAMA_CPP_DIR's build. With LLAMA_CPP_AVX2_DIR (a
# llama.cpp built without AVX-512, e.g. GGML_NATIVE=OFF GGML_AVX2=ON:
# what an AVX2-only host runs; needs llama-bench, and llama-perplexity
# for the ppl part) kvtile's avx2 set (KVT_CPU=avx2) is paired with it
# too, in the same run. SETS="default avx2" picks which pairs run.
#
# For each type of TYPES (default "f16 q8_0 q4_0 q4_k_m"), each pair of
# builds and each thread count T of THREADS (default "1 2"):
#   decode: `llama-bench -p 0 -n 32 -r 1 -t T` (its tg32 tokens/s) vs
#           `kvtile generate -n 32 -t T --kv-store ram` after a 26-token
#           prompt (tokens/s of the generated tokens, from its summary
#           line; llama-bench's tg32 starts from an empty context, the
#           difference in attention over 26 more positions is well under
#           the noise at this size). The two programs run in turn: one
#           warm-up pair, then PAIRS counted pairs (default 3); printed
#           are the medians of each program's tokens/s and of the per-pair
#           ratios, with the ratios' range.
#   ppl:    wall seconds of `llama-perplexity -c 2048 --chunks 1` vs
#           `kvtile ppl -c 2048 --chunks 1` on tests/data/kjv-nt.txt, one
#           pair, at the last thread count (PPL=0 skips it)
# Ratios are kvtile speed / llama.cpp speed: > 1 = kvtile faster. Read
# only ratios of one run: absolute speeds swing on a shared machine.
build=${1:-build}
bin=${LLAMA_CPP_DIR:-}
bin2=${LLAMA_CPP_AVX2_DIR:-}
dir=${KVT_BENCH_DIR:-/tmp/kvt-compare}
types=${TYPES:-f16 q8_0 q4_0 q4_k_m}
threads=${THREADS:-1 2}
pairs=${PAIRS:-3}
ppl=${PPL:-1}
text=tests/data/kjv-nt.txt
prompt="In the beginning God created the heaven and the earth."

if [ -z "$bin" ] || [ ! -x "$bin/llama-bench" ] || [ ! -x "$bin/llama-perplexity" ]; then
    echo "compare_llamacpp: set LLAMA_CPP_DIR to a llama.cpp build/bin (llama-bench," \
         "llama-perplexity); nothing compared"
    exit 0
fi
if [ -n "$bin2" ] && [ ! -x "$bin2/llama-bench" ]; then
    echo "compare_llamacpp: LLAMA_CPP_AVX2_DIR=$bin2 has no llama-bench" >&2
    exit 1
fi
sets=${SETS:-default${bin2:+ avx2}}
# llama-quantize makes the quantized files; only needed for files not yet
# in KVT_BENCH_DIR (an AVX2-only build may come without it)
quant=${LLAMA_QUANTIZE:-$bin/llama-quantize}
for p in "$build/kvtile" "$build/bench/gen_model"; do
    [ -x "$p" ] || { echo "compare_llamacpp: $p missing (make all)" >&2; exit 1; }
done
mkdir -p "$dir" || exit 1

# tl-TYPE.gguf: f16 from gen_model, the rest quantized from it
model() {
    f="$dir/tl-$1.gguf"
    [ -s "$f" ] && return 0
    if [ "$1" = f16 ]; then
        "$build/bench/gen_model" "$f" --shape tinyllama --type f16 >/dev/null || return 1
    else
        model f16 || return 1
        q=$(echo "$1" | tr a-z A-Z)
        [ -x "$quant" ] || { echo "compare_llamacpp: no $quant (LLAMA_QUANTIZE)" >&2; return 1; }
        "$quant" "$dir/tl-f16.gguf" "$f" "$q" 2 >/dev/null 2>&1 || return 1
    fi
}

now() { date +%s.%N; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a > 0 && b > 0) printf "%.2f", a / b; else printf "n/a" }'; }
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{ v[NR] = $1 } END {
    if (NR == 0) print "?"; else if (NR % 2) printf "%.3g\n", v[(NR + 1) / 2];
    else printf "%.3g\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
range() { tr ' ' '\n' | grep -v '^$' | sort -g | awk 'NR == 1 { a = $1 } { b = $1 } END { print a "-" b }'; }

# kvt_ts FILE T SET, llama_ts BIN FILE T: tokens/s of one run ("" if none)
kvt_ts() {
    if [ "$3" = default ]; then k=${KVT_CPU:-}; else k=$3; fi
    KVT_CPU=$k "$build/kvtile" generate "$1" -p "$prompt" -n 32 -t "$2" --kv-store ram 2>&1 >/dev/null |
        sed -n 's/.*generated [0-9]* at \([0-9.]*\) tok\/s.*/\1/p' | tail -1
}
llama_ts() {
    "$1/llama-bench" -m "$2" -p 0 -n 32 -t "$3" -r 1 -o csv 2>/dev/null |
        awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) { gsub(/"/, "", $i); if ($i == "avg_ts") c = i } next }
                 { gsub(/"/, "", $c); print $c }' | tail -1
}

n_prompt=$("$build/kvtile" tokenize "$dir/tl-f16.gguf" "$prompt" --count 2>/dev/null || echo "?")
for s in $sets; do
    if [ "$s" = default ]; then k=${KVT_CPU:-}; lb=$bin; else k=$s; lb=$bin2; fi
    cpu=$(KVT_CPU=$k "$build/kvtile" info "$dir/tl-f16.gguf" 2>/dev/null | sed -n 's/^cpu *//p')
    echo "set $s: kvtile cpu: $cpu; llama.cpp: $lb"
done
echo "decode: $pairs counted pairs after a warm-up pair; medians, ratio range in ()"
printf '%-8s %-8s %3s %10s %10s %7s %11s\n' type set t "kvt tok/s" "llama" ratio range
for t in $types; do
    model "$t" || { echo "$t: could not make $dir/tl-$t.gguf" >&2; continue; }
    f="$dir/tl-$t.gguf"
    for s in $sets; do
        if [ "$s" = default ]; then lb=$bin; else lb=$bin2; fi
        for th in $threads; do
            kvt_ts "$f" "$th" "$s" >/dev/null
            llama_ts "$lb" "$f" "$th" >/dev/null
            ks="" ls="" rs="" i=0
            while [ "$i" -lt "$pairs" ]; do
                kv=$(kvt_ts "$f" "$th" "$s")
                ll=$(llama_ts "$lb" "$f" "$th")
                ks="$ks ${kv:-}" ls="$ls ${ll:-}"
                r=$(ratio "${kv:-0}" "${ll:-0}")
                [ "$r" != n/a ] && rs="$rs $r"
                i=$((i + 1))
            done
            printf '%-8s %-8s %3s %10s %10s %7s %11s\n' "$t" "$s" "$th" \
                "$(echo "$ks" | median)" "$(echo "$ls" | median)" \
                "$(echo "$rs" | median)" "($(echo "$rs" | range))"
        done
    done
done
if [ "$ppl" = 1 ]; then
    th=$(echo "$threads" | awk '{ print $NF }')
    printf '%-8s %-8s %3s %10s %10s %7s\n' type set t "kvt ppl s" "llama s" ratio
    for t in $types; do
        f="$dir/tl-$t.gguf"
        [ -s "$f" ] || continue
        for s in $sets; do
            if [ "$s" = default ]; then k=${KVT_CPU:-}; lb=$bin; else k=$s; lb=$bin2; fi
            [ -x "$lb/llama-perplexity" ] || continue
            st=$(now)
            KVT_CPU=$k "$build/kvtile" ppl "$f" -f "$text" -c 2048 --chunks 1 -t "$th" --quiet >/dev/null 2>&1
            kp=$(awk -v a="$st" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }')
            st=$(now)
            "$lb/llama-perplexity" -m "$f" -f "$text" -c 2048 --chunks 1 -t "$th" >/dev/null 2>&1
            lp=$(awk -v a="$st" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }')
            printf '%-8s %-8s %3s %10s %10s %7s\n' "$t" "$s" "$th" "$kp" "$lp" "$(ratio "$lp" "$kp")"
        done
    done
fi
echo "(prompt $n_prompt tokens; ratio = kvtile speed / llama.cpp speed)"
