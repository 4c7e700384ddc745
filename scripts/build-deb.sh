#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# build-deb.sh - builds the Debian package transient_VERSION_ARCH.deb from a DESTDIR install of
# the CMake install rules (binaries, libnss_transient.so.2, libsubid_transient.so, units,
# tmpfiles.d, transient-nsswitch) plus the maintainer scripts of packaging/debian/, always with
# the runtime dir /run/transient (the tree's TRANSIENT_RUNTIME_DIR, which postrm gets too).
# Needs no debhelper: dpkg-deb builds the package, dpkg-shlibdeps (dpkg-dev) computes Depends:.
#
# Usage: scripts/build-deb.sh [-B BUILD_DIR] [-o OUT_DIR] [--no-deps]
#   -B BUILD_DIR  build tree to use (default ./build-deb). It is configured with --prefix /usr
#                 (which gives the multiarch libdir) and built as RelWithDebInfo without tests;
#                 an existing tree configured with another prefix is refused.
#   -o OUT_DIR    where the .deb goes (default BUILD_DIR/deb)
#   --no-deps     do not install missing build dependencies (scripts/deps.sh, dpkg-dev)
# Prints the path of the .deb as its last line. Environment: JOBS (default: CPUs), MAINTAINER
# ("Name <address>" for the Maintainer: field; default: who signed the newest entry of
# packaging/debian/changelog, which is the package's changelog.Debian.gz).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)

build_dir=$ROOT/build-deb
out_dir=""
deps=1
while [ $# -gt 0 ]; do
    case "$1" in
        -B) build_dir=$2; shift 2 ;;
        -o) out_dir=$2; shift 2 ;;
        --no-deps) deps=0; shift ;;
        -h|--help) sed -n '/^# build-deb.sh/,/^# Prints/p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "build-deb.sh: unknown argument '$1'" >&2; exit 2 ;;
    esac
done
# Relative paths are relative to where we were called from.
mkdir -p "$build_dir"
build_dir=$(cd "$build_dir" && pwd)
out_dir=${out_dir:-$build_dir/deb}
mkdir -p "$out_dir"
out_dir=$(cd "$out_dir" && pwd)
cd "$ROOT"
JOBS=${JOBS:-$(nproc)}

die() { echo "build-deb.sh: $*" >&2; exit 1; }

if [ $deps = 1 ]; then
    "$ROOT/scripts/deps.sh"
    if ! command -v dpkg-shlibdeps >/dev/null; then
        echo "build-deb.sh: installing dpkg-dev (dpkg-shlibdeps)"
        apt-get install -y -qq --no-install-recommends dpkg-dev </dev/null >/dev/null ||
            { apt-get update -qq && apt-get install -y -qq --no-install-recommends dpkg-dev </dev/null >/dev/null; }
    fi
fi
command -v dpkg-deb >/dev/null || die "dpkg-deb is missing (not a Debian system?)"

# ---- configure and build ----
cache=$build_dir/CMakeCache.txt
if [ -f "$cache" ]; then
    prefix=$(sed -n 's/^CMAKE_INSTALL_PREFIX:PATH=//p' "$cache")
    [ "$prefix" = /usr ] || die "$build_dir is configured for prefix '$prefix'; the package needs /usr (use another -B)"
fi
# Debian's hardening flags (stack protector, _FORTIFY_SOURCE, relro, bindnow), as a package
# build would use them.
flags=()
if command -v dpkg-buildflags >/dev/null; then
    export DEB_BUILD_MAINT_OPTIONS=${DEB_BUILD_MAINT_OPTIONS:-hardening=+all}
    cppflags=$(dpkg-buildflags --get CPPFLAGS)
    ldflags=$(dpkg-buildflags --get LDFLAGS)
    flags=("-DCMAKE_C_FLAGS=$cppflags $(dpkg-buildflags --get CFLAGS)"
           "-DCMAKE_CXX_FLAGS=$cppflags $(dpkg-buildflags --get CXXFLAGS)"
           "-DCMAKE_EXE_LINKER_FLAGS=$ldflags" "-DCMAKE_SHARED_LINKER_FLAGS=$ldflags")
fi
echo "== configure $build_dir"
cmake -S "$ROOT" -B "$build_dir" -DCMAKE_INSTALL_PREFIX=/usr -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DTRANSIENT_BUILD_TESTS=OFF -DTRANSIENT_INSTALL=ON -DTRANSIENT_RUNTIME_DIR=/run/transient \
    "${flags[@]}" >"$build_dir/configure-deb.log" 2>&1 ||
    { cat "$build_dir/configure-deb.log" >&2; die "configure failed"; }
echo "== build $build_dir (-j$JOBS)"
cmake --build "$build_dir" -j "$JOBS" >"$build_dir/build-deb.log" 2>&1 ||
    { tail -n 60 "$build_dir/build-deb.log" >&2; die "build failed"; }

# ---- the package tree ----
pkg=$build_dir/deb-root
rm -rf "$pkg"
DESTDIR=$pkg cmake --install "$build_dir" --prefix /usr --strip >"$build_dir/install-deb.log" ||
    { cat "$build_dir/install-deb.log" >&2; die "install failed"; }

# ---- ops: no .comment sections (compiler version strings), as dh_strip removes them; lintian's
# binary-has-unneeded-section otherwise.
while IFS= read -r -d '' f; do
    if [ "$(head -c 4 "$f" | tail -c 3)" = ELF ]; then
        objcopy --remove-section=.comment "$f" || die "objcopy failed on $f"
    fi
done < <(find "$pkg" -type f -print0)

arch=$(dpkg --print-architecture)
multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || gcc -print-multiarch)
for f in usr/sbin/transient-allocd usr/sbin/transient-userdbd usr/bin/transientctl \
         usr/sbin/transient-nsswitch "usr/lib/$multiarch/libnss_transient.so.2" \
         "usr/lib/$multiarch/libsubid_transient.so" \
         usr/lib/systemd/system/transient-allocd.socket usr/lib/systemd/system/transient-allocd.service \
         usr/lib/systemd/system/transient-allocd-import.path \
         usr/lib/systemd/system/transient-allocd-import.service \
         usr/lib/systemd/system/transient-userdbd.socket usr/lib/systemd/system/transient-userdbd.service \
         usr/lib/tmpfiles.d/transient.conf; do
    [ -e "$pkg/$f" ] || die "the install did not produce /$f"
done

# Manual pages and bash completion (man/, shell-completion/). Debian wants the pages compressed;
# the .so link libnss_transient.so.2.8 still finds nss-transient.8.gz.
for f in man/man1/transientctl.1 man/man5/allocd.conf.5 man/man8/transient-allocd.8 \
         man/man8/transient-userdbd.8 man/man8/nss-transient.8 man/man8/libnss_transient.so.2.8 \
         man/man8/libsubid_transient.8 man/man8/transient-nsswitch.8 \
         bash-completion/completions/transientctl bash-completion/completions/transient-nsswitch; do
    [ -f "$pkg/usr/share/$f" ] || die "the install did not produce /usr/share/$f"
done
find "$pkg/usr/share/man" -type f -name '*.[0-9]' -exec gzip -9n {} +

version=$(sed -n 's/^CMAKE_PROJECT_VERSION:STATIC=//p' "$cache")
[ -n "$version" ] || die "no CMAKE_PROJECT_VERSION in $cache"
version=$version-1
# The Maintainer: default is the one packaging/debian/changelog's entries are signed with.
maintainer=${MAINTAINER:-$(sed -n 's/^ -- \(.*>\)  .*/\1/p' "$ROOT/packaging/debian/changelog" | head -n 1)}
[ -n "$maintainer" ] || die "no maintainer in packaging/debian/changelog"

# Depends: from the ELF files' NEEDED entries via dpkg-shlibdeps, which wants a debian/control
# of a source package in its working directory.
elfs=("$pkg/usr/sbin/transient-allocd" "$pkg/usr/sbin/transient-userdbd" "$pkg/usr/bin/transientctl"
      "$pkg/usr/lib/$multiarch/libnss_transient.so.2" "$pkg/usr/lib/$multiarch/libsubid_transient.so")
shl=$build_dir/shlibdeps
rm -rf "$shl"
mkdir -p "$shl/debian"
printf 'Source: transient\n\nPackage: transient\nArchitecture: any\n' >"$shl/debian/control"
if command -v dpkg-shlibdeps >/dev/null &&
        depends=$(cd "$shl" && dpkg-shlibdeps -O "${elfs[@]/#/-e}" 2>"$shl/stderr"); then
    depends=${depends#shlibs:Depends=}
else
    cat "$shl/stderr" >&2 2>/dev/null || true
    echo "build-deb.sh: warning: dpkg-shlibdeps unavailable or failed; using a hand-written Depends:" >&2
    depends="libc6 (>= 2.36), libgcc-s1 (>= 3.0), libstdc++6 (>= 12), libsystemd0 (>= 252)"
fi
# The maintainer scripts are bash (Essential); systemd-tmpfiles and deb-systemd-* are used only
# when present.

# Documentation Debian requires of every package: copyright and changelog.
doc=$pkg/usr/share/doc/transient
mkdir -p "$doc"
install -m 0644 "$ROOT/packaging/debian/copyright" "$doc/copyright"
# The changelog is packaging/debian/changelog, whose newest entry must be this version: a
# release gets its entry there, as in any Debian source package.
changelog_version=$(sed -n '1s/^transient (\([^)]*\)).*/\1/p' "$ROOT/packaging/debian/changelog")
[ "$changelog_version" = "$version" ] ||
    die "packaging/debian/changelog's newest entry is '$changelog_version', not $version: add an entry"
gzip -9nc "$ROOT/packaging/debian/changelog" >"$doc/changelog.Debian.gz"
chmod 0644 "$doc/changelog.Debian.gz"
# Each lintian override is explained in the file itself.
mkdir -p "$pkg/usr/share/lintian/overrides"
install -m 0644 "$ROOT/packaging/debian/transient.lintian-overrides" \
    "$pkg/usr/share/lintian/overrides/transient"

mkdir -p "$pkg/DEBIAN"
installed_size=$(du -sk --exclude=DEBIAN "$pkg" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@INSTALLED_SIZE@/$installed_size/" \
    -e "s/@DEPENDS@/$depends/" -e "s|@MAINTAINER@|$maintainer|" \
    "$ROOT/packaging/debian/control.in" >"$pkg/DEBIAN/control"
# libnss_transient.so.2 and libsubid_transient.so are shared libraries in a public directory:
# refresh ld.so.cache.
install -m 0644 "$ROOT/packaging/debian/triggers" "$pkg/DEBIAN/triggers"

# The maintainer scripts carry their own copy of transient-nsswitch's functions: postrm runs
# after /usr/sbin/transient-nsswitch is gone.
functions=$build_dir/nsswitch-functions.sh
sed -n '/^# BEGIN transient-nsswitch functions$/,/^# END transient-nsswitch functions$/p' \
    "$ROOT/packaging/transient-nsswitch" >"$functions"
[ -s "$functions" ] || die "no functions between the markers in packaging/transient-nsswitch"
# They name the runtime dir the tree was configured with, as the units do.
runtime_dir=$(sed -n 's/^TRANSIENT_RUNTIME_DIR:[A-Z]*=//p' "$cache")
[[ $runtime_dir == /* ]] || die "no absolute TRANSIENT_RUNTIME_DIR in $cache"
for s in postinst prerm postrm; do
    awk -v f="$functions" '
        $0 == "#TRANSIENT_NSSWITCH_FUNCTIONS#" { while ((getline l < f) > 0) print l; next }
        { print }' "$ROOT/packaging/debian/$s" |
        sed "s|@TRANSIENT_RUNTIME_DIR@|$runtime_dir|g" >"$pkg/DEBIAN/$s"
    chmod 0755 "$pkg/DEBIAN/$s"
    bash -n "$pkg/DEBIAN/$s" || die "DEBIAN/$s is not valid bash"
    ! grep -n '@[A-Z_]*@' "$pkg/DEBIAN/$s" || die "DEBIAN/$s: a placeholder is left"
done
(cd "$pkg" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z | xargs -0 md5sum) \
    >"$pkg/DEBIAN/md5sums"
chmod 0644 "$pkg/DEBIAN/control" "$pkg/DEBIAN/md5sums"

mkdir -p "$out_dir"
deb=$out_dir/transient_${version}_$arch.deb
rm -f "$deb"
dpkg-deb --root-owner-group -Zxz --build "$pkg" "$deb" >/dev/null
# system.lintian (tests/system/lintian.sh) fails on any tag; here it is advice.
if command -v lintian >/dev/null; then
    lintian --tag-display-limit 0 "$deb" || echo "build-deb.sh: lintian reported the above" >&2
fi
echo "== package: Depends: $depends"
echo "$deb"
