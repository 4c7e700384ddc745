#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Installs missing dependencies, configures and builds transient.
#
#   scripts/build.sh            RelWithDebInfo build in ./build (or $BUILD_DIR)
#   scripts/build.sh --tsan     also a ThreadSanitizer build in ./build-tsan (or $TSAN_BUILD_DIR)
#   scripts/build.sh --tsan-only only the ThreadSanitizer build
#   scripts/build.sh --no-deps  skip scripts/deps.sh
#
# Environment: BUILD_DIR, TSAN_BUILD_DIR, JOBS (default: number of CPUs), CMAKE_ARGS (extra
# configure arguments, word-split).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

tsan=0 main=1 deps=1
for arg in "$@"; do
    case "$arg" in
        --tsan) tsan=1 ;;
        --tsan-only) tsan=1 main=0 ;;
        --no-deps) deps=0 ;;
        -h|--help) sed -n '/^# Installs/,/^# configure/p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "build.sh: unknown argument '$arg'" >&2; exit 2 ;;
    esac
done

BUILD_DIR=${BUILD_DIR:-$ROOT/build}
TSAN_BUILD_DIR=${TSAN_BUILD_DIR:-$ROOT/build-tsan}
JOBS=${JOBS:-$(nproc)}
read -r -a extra <<<"${CMAKE_ARGS:-}"

[ $deps = 1 ] && "$ROOT/scripts/deps.sh"

# configure_and_build DIR [cmake args...]
configure_and_build() {
    local dir=$1; shift
    echo "== configure $dir"
    cmake -S "$ROOT" -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" "${extra[@]}" >"$dir/configure.log" 2>&1 \
        || { cat "$dir/configure.log"; echo "build.sh: configure of $dir failed" >&2; return 1; }
    echo "== build $dir (-j$JOBS)"
    cmake --build "$dir" -j "$JOBS"
}

if [ $main = 1 ]; then
    mkdir -p "$BUILD_DIR"
    configure_and_build "$BUILD_DIR"
fi
if [ $tsan = 1 ]; then
    mkdir -p "$TSAN_BUILD_DIR"
    configure_and_build "$TSAN_BUILD_DIR" -DTRANSIENT_SANITIZE=thread
fi
