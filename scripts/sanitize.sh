#!/usr/bin/env bash
# make test's sanitizer runs: the whole test suite under AddressSanitizer (with LeakSanitizer)
# and under ThreadSanitizer, each in its own build folder. Fails on any test failure and on any
# sanitizer report, whatever the exit code says. `scripts/sanitize.sh address` or `thread` runs one.
set -uo pipefail
cd "$(dirname "$0")/.."
SWIFT=${SWIFT:-swift}
kinds=${*:-address thread}
failed=0
for kind in $kinds; do
    case $kind in
        address) short=asan ;;
        thread) short=tsan ;;
        *) echo "sanitize.sh: unknown sanitizer '$kind' (address or thread)"; exit 2 ;;
    esac
    log=.build/$short.log
    mkdir -p .build
    echo "== swift test --sanitize=$kind (log: $log)"
    # leaks checked at exit (suppressions: scripts/lsan.supp says which and why); TSan reports
    # every race it sees, the second and later reports of one race included
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:detect_stack_use_after_return=0 \
    LSAN_OPTIONS=suppressions=$PWD/scripts/lsan.supp:print_suppressions=0 \
    TSAN_OPTIONS=halt_on_error=0:report_signal_unsafe=0 \
        $SWIFT test --sanitize=$kind --scratch-path .build/$short --skip EveryKernelPathTests >"$log" 2>&1
    rc=$?
    # the suite that switches the global kernel path runs in a process of its own
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:detect_stack_use_after_return=0 \
    LSAN_OPTIONS=suppressions=$PWD/scripts/lsan.supp:print_suppressions=0 \
    TSAN_OPTIONS=halt_on_error=0:report_signal_unsafe=0 \
        $SWIFT test --sanitize=$kind --scratch-path .build/$short --skip-build --filter EveryKernelPathTests >>"$log" 2>&1
    rc=$(( rc | $? ))
    reports=$(grep -cE 'ERROR: AddressSanitizer|ERROR: LeakSanitizer|WARNING: ThreadSanitizer|runtime error:' "$log")
    tests=$(grep -oE 'Test run with [0-9]+ tests? in [0-9]+ suites? (passed|failed)[^.]*' "$log" | paste -sd ';' -)
    echo "   ${tests:-no swift-testing summary}; exit $rc; sanitizer reports: $reports"
    if [ $rc -ne 0 ] || [ "$reports" -ne 0 ]; then
        failed=1
        grep -nE -A30 'ERROR: AddressSanitizer|ERROR: LeakSanitizer|WARNING: ThreadSanitizer|runtime error:|✘' "$log" | head -120
    fi
done
exit $failed
