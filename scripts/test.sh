#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# test.sh - installs what is missing (scripts/deps.sh), builds, unpacks Debian's userdbctl into
# the build dir (scripts/fetch-userdbctl.sh), and runs the tests with ctest: labels unit, abi,
# integration, stress, system (the .deb in a throw-away systemd container, a build with another
# TRANSIENT_RUNTIME_DIR) and bench (benchmarks as short smoke runs) in ./build; then the stress
# tests in a ThreadSanitizer build (./build-tsan) and the unit tests in an AddressSanitizer +
# UBSan build (./build-asan). Exits non-zero if any test fails.
# Run it as root: without root, the integration and system tests are skipped.
#
# Environment: BUILD_DIR, TSAN_BUILD_DIR, ASAN_BUILD_DIR, JOBS (build and ctest parallelism,
# default: CPUs), TRANSIENT_TEST_SANITIZERS=0 to skip the sanitized builds, CTEST_ARGS (extra
# ctest arguments, word-split).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

BUILD_DIR=${BUILD_DIR:-$ROOT/build}
TSAN_BUILD_DIR=${TSAN_BUILD_DIR:-$ROOT/build-tsan}
ASAN_BUILD_DIR=${ASAN_BUILD_DIR:-$ROOT/build-asan}
JOBS=${JOBS:-$(nproc)}
read -r -a extra <<<"${CTEST_ARGS:-}"
export BUILD_DIR TSAN_BUILD_DIR ASAN_BUILD_DIR JOBS

t_start=$SECONDS
"$ROOT/scripts/deps.sh"
"$ROOT/scripts/build.sh" --no-deps
echo "== built in $((SECONDS - t_start)) s"

# The userdb client tests compare against Debian's userdbctl, unpacked (not installed) into the
# build dir; without it they fail and say so.
if [ -x "$ROOT/scripts/fetch-userdbctl.sh" ]; then
    "$ROOT/scripts/fetch-userdbctl.sh" "$BUILD_DIR/userdbd-root" >/dev/null ||
        echo "test.sh: warning: could not fetch userdbctl; the userdb client tests will fail" >&2
fi

# ctest_run DIR LABEL_REGEX: one ctest run; its summary lines end its output.
ctest_run() {
    local dir=$1 labels=$2
    echo
    echo "== ctest in $(basename "$dir"): labels $labels"
    ctest --test-dir "$dir" --output-on-failure --no-tests=error -j "$JOBS" --timeout 900 \
        -L "$labels" "${extra[@]}"
}

rc=0
ctest_run "$BUILD_DIR" '^(unit|abi|integration|stress|system|bench)$' || rc=1
echo "== $((SECONDS - t_start)) s so far"

# The sanitizers, as whole builds (TRANSIENT_SANITIZE): the concurrency tests under
# ThreadSanitizer, the unit tests (hostile tables, parsers, limits) under AddressSanitizer and
# UBSan. Both abort on the first report, so a report is a failed test.
if [ "${TRANSIENT_TEST_SANITIZERS:-1}" != 0 ]; then
    t_san=$SECONDS
    echo
    "$ROOT/scripts/build.sh" --no-deps --only --tsan --asan
    echo "== sanitized builds in $((SECONDS - t_san)) s; $((SECONDS - t_start)) s so far"
    TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1 second_deadlock_stack=1} \
        ctest_run "$TSAN_BUILD_DIR" '^stress$' || rc=1
    ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0} \
    UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1 print_stacktrace=1} \
        ctest_run "$ASAN_BUILD_DIR" '^unit$' || rc=1
fi

# Nothing after this: ctest's summary lines are the last words.
exit $rc
