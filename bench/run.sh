#!/bin/sh
# make bench: run every bench program in BUILD/bench with modest defaults
# (each finishes in about a minute on a 2-core VM) and print its output,
# then `kvtile iobench` on a small grid. Per-program arguments: the case
# below; anything not listed runs without arguments. Generators (gen_*)
# are not benchmarks and are skipped. Big scratch files go to
# $KVT_BENCH_DIR (default /tmp) and are removed.
#   full runs: bench_decode2m --tokens 256K,2M --dir DIR --clean
#              kvtile iobench --size 4G --codecs none,lz4,shuf-lz4,xpose-lz4 \
#                  --types f32,f16,q8_0 --qd 1,4,16,64 --tile-tokens 64,256,1024
build=${1:-build}
dir=${KVT_BENCH_DIR:-/tmp}
limit=${KVT_BENCH_TIMEOUT:-1800}
fail=0
run() {
    echo "== $*"
    timeout "$limit" "$@"
    rc=$?
    [ $rc -eq 0 ] || { echo "== FAILED (rc $rc): $*"; fail=1; }
    echo
}
for b in "$build"/bench/*; do
    [ -f "$b" ] && [ -x "$b" ] || continue
    name=$(basename "$b")
    case "$name" in
    *.o|*.d|gen_*) continue ;;
    bench_decode2m) run "$b" --tokens 64K,256K --steps 2 --dir "$dir" --clean ;;
    bench_codec) # real tiles: 8,192 tokens of the New Testament through tiny-kjv
        d="$dir/kvt-bench-codec.$$"
        if "$build/kvtile" ppl models/tiny-kjv-f32.gguf -f tests/data/kjv-nt.txt -c 8192 \
            --chunks 1 --score all --cache-dir "$d" --keep-cache --quiet >/dev/null; then
            run "$b" "$d/ppl.kvt" -r 3
        else
            echo "== FAILED: the cache for bench_codec"; fail=1
        fi
        rm -rf "$d" ;;
    *) run "$b" ;;
    esac
done
if [ -x "$build/kvtile" ]; then
    run "$build/kvtile" iobench --dir "$dir" --size 256M --codecs none,plane-huf \
        --qd 1,16 --tile-tokens 256,1024
fi
exit $fail
