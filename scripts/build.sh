#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Installs missing dependencies, configures and builds transient.
#
#   scripts/build.sh             RelWithDebInfo build in ./build (or $BUILD_DIR)
#   scripts/build.sh --tsan      also a ThreadSanitizer build in ./build-tsan (or $TSAN_BUILD_DIR)
#   scripts/build.sh --asan      also an AddressSanitizer + UBSan build in ./build-asan
#                                (or $ASAN_BUILD_DIR)
#   scripts/build.sh --only      with --tsan/--asan: only the sanitized builds
#   scripts/build.sh --tsan-only the same as --tsan --only
#   scripts/build.sh --no-deps   skip scripts/deps.sh
#
# Environment: BUILD_DIR, TSAN_BUILD_DIR, ASAN_BUILD_DIR, JOBS (default: number of CPUs),
# CMAKE_ARGS (extra configure arguments, word-split). ccache is used when it is installed.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

tsan=0 asan=0 main=1 deps=1
for arg in "$@"; do
    case "$arg" in
        --tsan) tsan=1 ;;
        --asan) asan=1 ;;
        --only) main=0 ;;
        --tsan-only) tsan=1 main=0 ;;
        --no-deps) deps=0 ;;
        -h|--help) sed -n '/^# Installs/,/^# CMAKE_ARGS/p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "build.sh: unknown argument '$arg'" >&2; exit 2 ;;
    esac
done

BUILD_DIR=${BUILD_DIR:-$ROOT/build}
TSAN_BUILD_DIR=${TSAN_BUILD_DIR:-$ROOT/build-tsan}
ASAN_BUILD_DIR=${ASAN_BUILD_DIR:-$ROOT/build-asan}
JOBS=${JOBS:-$(nproc)}
read -r -a extra <<<"${CMAKE_ARGS:-}"

[ $deps = 1 ] && "$ROOT/scripts/deps.sh"

if command -v ccache >/dev/null; then
    export CMAKE_C_COMPILER_LAUNCHER=${CMAKE_C_COMPILER_LAUNCHER:-ccache}
    export CMAKE_CXX_COMPILER_LAUNCHER=${CMAKE_CXX_COMPILER_LAUNCHER:-ccache}
fi

# configure_and_build DIR [cmake args...]
configure_and_build() {
    local dir=$1; shift
    mkdir -p "$dir"
    echo "== configure $dir"
    cmake -S "$ROOT" -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" "${extra[@]}" >"$dir/configure.log" 2>&1 \
        || { cat "$dir/configure.log"; echo "build.sh: configure of $dir failed" >&2; return 1; }
    echo "== build $dir (-j$JOBS)"
    cmake --build "$dir" -j "$JOBS"
}

[ $main = 1 ] && configure_and_build "$BUILD_DIR"
[ $tsan = 1 ] && configure_and_build "$TSAN_BUILD_DIR" -DTRANSIENT_SANITIZE=thread
[ $asan = 1 ] && configure_and_build "$ASAN_BUILD_DIR" -DTRANSIENT_SANITIZE=address,undefined \
    -DCMAKE_CXX_FLAGS=-fno-sanitize-recover=all -DCMAKE_C_FLAGS=-fno-sanitize-recover=all
exit 0
