#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# test.sh - installs what is missing (scripts/deps.sh), builds, unpacks Debian's userdbctl into
# the build dir (scripts/fetch-userdbctl.sh), and runs the tests with ctest: labels unit, abi,
# integration, stress and system (the .deb in a throw-away systemd container, a build with another
# TRANSIENT_RUNTIME_DIR) in ./build; when the tests define a "tsan" label, those tests (and the
# stress ones) also in a ThreadSanitizer build in ./build-tsan. Exits non-zero if any test fails.
# Run it as root: without root, the integration and system tests are skipped.
#
# Environment: BUILD_DIR, TSAN_BUILD_DIR, JOBS (build and ctest parallelism, default: CPUs),
# TRANSIENT_TEST_TSAN=0 to skip the TSan build, CTEST_ARGS (extra ctest arguments, word-split).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

BUILD_DIR=${BUILD_DIR:-$ROOT/build}
TSAN_BUILD_DIR=${TSAN_BUILD_DIR:-$ROOT/build-tsan}
JOBS=${JOBS:-$(nproc)}
read -r -a extra <<<"${CTEST_ARGS:-}"
export BUILD_DIR TSAN_BUILD_DIR JOBS

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
ctest_run "$BUILD_DIR" '^(unit|abi|integration|stress|system)$' || rc=1
echo "== $((SECONDS - t_start)) s so far"

tsan_tests=$(ctest --test-dir "$BUILD_DIR" -N -L '^tsan$' | sed -n 's/^Total Tests: //p')
if [ "${TRANSIENT_TEST_TSAN:-1}" != 0 ] && [ "${tsan_tests:-0}" -gt 0 ]; then
    t_tsan=$SECONDS
    echo
    "$ROOT/scripts/build.sh" --no-deps --tsan-only
    echo "== TSan build in $((SECONDS - t_tsan)) s; $((SECONDS - t_start)) s so far"
    # TSan aborts on the first report by default; halt_on_error makes a race a failed test.
    TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1 second_deadlock_stack=1} \
        ctest_run "$TSAN_BUILD_DIR" '^(stress|tsan)$' || rc=1
fi

# Nothing after this: ctest's summary lines are the last words.
exit $rc
