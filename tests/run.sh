#!/bin/sh
# Run every test program in BUILD/tests with a per-program timeout; sum the
# "N passed, N failed, N skipped" lines; print the total last.
# Exit 77 from a program = skipped (machine lacks a feature).
build=${1:-build}
limit=${KVT_TEST_TIMEOUT:-1800}
pass=0; fail=0; skip=0
for t in "$build"/tests/test_*; do
    [ -x "$t" ] || continue
    case "$t" in *.o|*.d) continue;; esac
    name=$(basename "$t")
    start=$(date +%s)
    out=$(KVT_BUILD="$build" timeout "$limit" "$t" 2>"$build/tests/$name.log")
    rc=$?
    secs=$(( $(date +%s) - start ))
    line=$(printf '%s\n' "$out" | grep -E '^[0-9]+ passed, [0-9]+ failed' | tail -n 1)
    p=$(echo "$line" | sed -n 's/^\([0-9]*\) passed.*/\1/p'); p=${p:-0}
    f=$(echo "$line" | sed -n 's/.* \([0-9]*\) failed.*/\1/p'); f=${f:-0}
    s=$(echo "$line" | sed -n 's/.* \([0-9]*\) skipped.*/\1/p'); s=${s:-0}
    if [ $rc -ne 0 ] && [ $rc -ne 77 ] && [ "$f" -eq 0 ]; then
        f=1   # crashed, timed out or failed without saying so
    fi
    pass=$((pass + p)); fail=$((fail + f)); skip=$((skip + s))
    status=ok; [ "$f" -gt 0 ] && status=FAIL; [ $rc -eq 77 ] && status=skip
    printf '%-4s %-24s %s (%ss, rc %s)\n' "$status" "$name" "$line" "$secs" "$rc"
    if [ "$status" = FAIL ]; then sed 's/^/    /' "$build/tests/$name.log" | grep -v '^    ok ' | tail -n 30; fi
done
echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
