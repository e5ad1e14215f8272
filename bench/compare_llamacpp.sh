#!/bin/sh
# compare_llamacpp.sh - kvtile against llama.cpp on the same generated GGUF
# files of the TinyLlama-1.1B shape (random weights, bench/gen_model).
#
#   LLAMA_CPP_DIR=/path/to/llama.cpp/build/bin sh bench/compare_llamacpp.sh [BUILD]
#
# Needs llama-bench and llama-perplexity in LLAMA_CPP_DIR (without them
# the script says so and exits 0; `make bench` does not run it). Writes
# tl-f16.gguf with gen_model, the other types with llama-quantize
# (LLAMA_QUANTIZE, default LLAMA_CPP_DIR/llama-quantize; only for files
# not yet there), into KVT_BENCH_DIR (default /tmp/kvt-compare; kept for
# the next run). Pair kernel sets: KVT_CPU=avx2 with an AVX2-only build
# (LLAMA_CPP_DIR=.../build-avx2/bin); the script prints llama.cpp's
# system_info and a note when the two differ. For each type of TYPES (default "f16 q8_0 q4_0 q4_k_m"):
#   decode: `llama-bench -p 0 -n 32 -t T` (tokens/s) vs `kvtile generate
#           -n 32 -t T --kv-store ram` after a 26-token prompt (tokens/s of
#           the generated tokens, from its summary line)
#   ppl:    wall seconds of `llama-perplexity -c 2048 --chunks 1` vs
#           `kvtile ppl -c 2048 --chunks 1` on tests/data/kjv-nt.txt
#           (PPL=0 skips it)
# and prints the ratios (kvtile speed / llama.cpp speed: > 1 = kvtile
# faster). T = THREADS (default 2); llama-bench repeats REPS times
# (default 3). KVT_CPU passes through to kvtile (e.g.
# KVT_CPU=avx2 to time its AVX2 kernels). Runs of the two programs
# alternate, so a noisy machine hits both; still, read ratios of one run.
build=${1:-build}
bin=${LLAMA_CPP_DIR:-}
dir=${KVT_BENCH_DIR:-/tmp/kvt-compare}
types=${TYPES:-f16 q8_0 q4_0 q4_k_m}
threads=${THREADS:-2}
reps=${REPS:-3}
ppl=${PPL:-1}
text=tests/data/kjv-nt.txt
prompt="In the beginning God created the heaven and the earth."

if [ -z "$bin" ] || [ ! -x "$bin/llama-bench" ] || [ ! -x "$bin/llama-perplexity" ]; then
    echo "compare_llamacpp: set LLAMA_CPP_DIR to a llama.cpp build/bin (llama-bench," \
         "llama-perplexity); nothing compared"
    exit 0
fi
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
        "$quant" "$dir/tl-f16.gguf" "$f" "$q" "$threads" >/dev/null 2>&1 || return 1
    fi
}

now() { date +%s.%N; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a > 0 && b > 0) printf "%.2f", a / b; else printf "n/a" }'; }

n_prompt=$("$build/kvtile" tokenize "$dir/tl-f16.gguf" "$prompt" --count 2>/dev/null || echo "?")
cpu=$("$build/kvtile" info "$dir/tl-f16.gguf" 2>/dev/null | sed -n 's/^cpu *//p')
echo "kvtile cpu: $cpu; threads $threads"
printf '%-8s %12s %12s %7s' type "kvt tok/s" "llama tok/s" ratio
[ "$ppl" = 1 ] && printf ' %10s %10s %7s' "kvt ppl s" "llama s" ratio
echo
for t in $types; do
    model "$t" || { echo "$t: could not make $dir/tl-$t.gguf" >&2; continue; }
    f="$dir/tl-$t.gguf"
    kv=$("$build/kvtile" generate "$f" -p "$prompt" -n 32 -t "$threads" --kv-store ram 2>&1 >/dev/null |
         sed -n 's/.*generated [0-9]* at \([0-9.]*\) tok\/s.*/\1/p' | tail -1)
    ll=$("$bin/llama-bench" -m "$f" -p 0 -n 32 -t "$threads" -r "$reps" -o csv 2>/dev/null |
         awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == "avg_ts") c = i; next }
                  { gsub(/"/, "", $c); print $c }' | tail -1)
    printf '%-8s %12s %12s %7s' "$t" "${kv:-?}" "${ll:-?}" "$(ratio "${kv:-0}" "${ll:-0}")"
    if [ "$ppl" = 1 ]; then
        s=$(now)
        "$build/kvtile" ppl "$f" -f "$text" -c 2048 --chunks 1 -t "$threads" --quiet >/dev/null 2>&1
        kp=$(awk -v a="$s" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }')
        s=$(now)
        "$bin/llama-perplexity" -m "$f" -f "$text" -c 2048 --chunks 1 -t "$threads" \
            >/dev/null 2>"$dir/llama-ppl.err"
        lp=$(awk -v a="$s" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }')
        [ -z "$llama_cpu" ] && llama_cpu=$(sed -n 's/.*system_info: //p' "$dir/llama-ppl.err" | head -1)
        printf ' %10s %10s %7s' "$kp" "$lp" "$(ratio "$lp" "$kp")"
    fi
    echo
done
echo "(prompt $n_prompt tokens; ratio = kvtile speed / llama.cpp speed)"
# kvtile's kernel set should match what the llama.cpp build runs: its avx2
# set (KVT_CPU=avx2) against an AVX2-only build, avx512 against a native one
if [ -n "$llama_cpu" ]; then
    echo "llama.cpp system_info: $llama_cpu"
    case "$cpu" in *"kernels avx512"*) kset=avx512 ;; *"kernels avx2"*) kset=avx2 ;; *) kset=other ;; esac
    case "$llama_cpu" in *"AVX512 = 1"*) lset=avx512 ;; *"AVX2 = 1"*) lset=avx2 ;; *) lset=other ;; esac
    [ "$kset" = "$lset" ] || echo "note: kvtile runs its $kset set, llama.cpp was built for $lset" \
        "(KVT_CPU=avx2 pairs with an AVX2-only build such as build-avx2)"
fi
