#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# docs.man: the manual pages as this build tree generates and installs them.
#   - `cmake -P` of man/'s and shell-completion/'s install scripts puts every page (and the
#     completion files) where `cmake --install` does, under a scratch prefix;
#   - each installed page renders without a single warning from man/groff, lexgrog reads its
#     NAME, it fits 80 columns, and it has the sections a page of its kind needs;
#   - each binary's page describes exactly the options, commands and TRANSIENT_* variables its
#     --help lists; allocd.conf(5) exactly the keys of allocator/config.cpp (and of
#     allocd.conf.example); nss-transient(8) every variable the module reads;
#   - transient-allocd(8) names every error of io.transient.Allocator (allocator/interface.hpp);
#   - every page of ours named in SEE ALSO exists;
#   - every systemd unit's Documentation= names installed pages of ours.
# Usage: man.sh SOURCE_DIR BUILD_DIR MANDIR COMPLETIONSDIR ALLOCD USERDBD CTL
#   MANDIR and COMPLETIONSDIR as configured (CMAKE_INSTALL_MANDIR, TRANSIENT_BASH_COMPLETION_DIR)
set -euo pipefail

SRC=$1 BUILD=$2 mandir=$3 completions=$4
shift 4
. "$(dirname "$0")/lib.sh"
for tool in man lexgrog groff col; do
    command -v $tool >/dev/null ||
        { echo "docs.man: '$tool' is missing (packages man-db, groff-base, bsdextrautils; scripts/deps.sh)" >&2; exit 1; }
done

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
PREFIX=$TMP/prefix

printf '\n== install\n'
for dir in man shell-completion; do
    rc=0
    cmake -DCMAKE_INSTALL_PREFIX="$PREFIX" -P "$BUILD/$dir/cmake_install.cmake" \
        >"$TMP/install.log" 2>&1 || rc=$?
    expect_eq "$dir/ installs (cmake -P $dir/cmake_install.cmake)" "0" "$rc$(
        [ $rc = 0 ] || cat "$TMP/install.log")"
    # Nothing outside the prefix: a test must never write into /usr of the machine it runs on.
    expect_eq "$dir/ installs nothing outside the prefix" "" \
        "$(sed -n 's/^-- \(Installing\|Up-to-date\): //p' "$TMP/install.log" |
            grep -v "^$PREFIX/" || true)"
done
[[ $mandir == /* ]] || mandir=$PREFIX/$mandir
[[ $completions == /* ]] || completions=$PREFIX/$completions
for f in transientctl transient-nsswitch; do
    expect_eq "the completion of $f is installed" yes "$([ -f "$completions/$f" ] && echo yes)"
done

# page | its binary's --help (or -) | what its ENVIRONMENT lists, if not the --help's variables
PAGES=(
    "man1/transientctl.1|$3|"
    "man8/transient-allocd.8|$1|"
    "man8/transient-userdbd.8|$2|"
    "man8/transient-nsswitch.8|$SRC/packaging/transient-nsswitch|"
    "man8/nss-transient.8|-|$(grep -ohE '"TRANSIENT_[A-Z_]+"' "$SRC"/nss/*.cpp "$SRC/base/runtime_dir.hpp" | tr -d '"' | sort -u | xargs)"
    "man8/libnss_transient.so.2.8|-|TRANSIENT_NSS_BYPASS TRANSIENT_RUNTIME_DIR"
    "man8/libsubid_transient.8|-|TRANSIENT_RUNTIME_DIR"
    "man5/allocd.conf.5|-|"
)
nl=$'\n'
ours=" "
for row in "${PAGES[@]}"; do
    page=${row%%|*}
    name=${page#*/}
    ours+="${name%.*}(${name##*.}) "
done

mkdir -p "$mandir"
cd "$mandir"  # .so requests are relative to the top of the manual tree
for row in "${PAGES[@]}"; do
    IFS='|' read -r page bin variables <<<"$row"
    printf '\n== %s\n' "$page"
    if [ ! -f "$page" ]; then
        fail "$page is installed in $mandir"
        continue
    fi
    pass "$page is installed"

    rc=0
    LC_ALL=C.UTF-8 MANROFFSEQ='' MANWIDTH=80 man --warnings -E UTF-8 -l -Tutf8 -Z "$page" \
        >/dev/null 2>"$TMP/warnings" || rc=$?
    expect_eq "$page: man --warnings is silent" "0" "$rc$(cat "$TMP/warnings")"
    rc=0
    whatis=$(lexgrog "$page" 2>&1) || rc=$?
    title=${page##*/}
    title=${title%.*}
    [ $rc = 0 ] || whatis="exit $rc: $whatis"
    expect_match "$page: lexgrog reads its NAME" "(^|$nl)$page: \"$title - [^\"]+\"" "$whatis"

    text=$(man_render "$page")
    expect_eq "$page: no line is wider than MANWIDTH=80" "" \
        "$(awk 'length($0) > 80 { print NR ": " $0 }' <<<"$text")"
    if [ "$bin" != - ]; then
        help=$("$bin" --help)
        expect_eq "$page: OPTIONS describes exactly the options of --help" \
            "$(help_options "$help" | xargs)" "$(man_options "$(man_section OPTIONS "$text")" | xargs)"
        commands=$(help_commands "$help" | xargs)
        if [ -n "$commands" ]; then
            expect_eq "$page: COMMANDS describes exactly the commands of --help" "$commands" \
                "$(man_tags "$(man_section COMMANDS "$text")" | awk '{ print $1 }' | sort -u | xargs)"
        fi
        variables=$(help_variables "$help" | xargs)
    fi
    if [ -n "$variables" ]; then
        expect_eq "$page: ENVIRONMENT describes exactly $variables" "$variables" \
            "$(man_tags "$(man_section ENVIRONMENT "$text")" | grep -E '^[A-Z_]+$' | sort -u | xargs)"
    fi

    headings=$(grep -E '^[A-Z][A-Z ]+$' <<<"$text" | xargs)
    want="NAME SYNOPSIS DESCRIPTION OPTIONS"
    [ -z "$variables" ] || want+=" ENVIRONMENT"
    want+=" FILES"
    [[ $page == man5/* ]] || want+=" EXIT STATUS"
    want+=" EXAMPLES SEE ALSO"
    for h in NAME SYNOPSIS DESCRIPTION OPTIONS ENVIRONMENT FILES "EXIT STATUS" EXAMPLES "SEE ALSO"; do
        [[ " $want " == *" $h "* ]] || continue
        expect_match "$page has a section $h" "(^| )$h( |$)" "$headings"
    done

    for ref in $(man_section "SEE ALSO" "$text" | grep -oE '[a-z][a-z0-9_.-]*\([0-9]\)'); do
        case "$ref" in
            transient*|nss-transient*|libsubid_transient*|allocd.conf*)
                expect_match "$page: SEE ALSO $ref is one of our pages" " ${ref//[().]/\\&} " "$ours" ;;
        esac
    done
done

printf '\n== the units'"'"' Documentation= and the pages installed\n'
# As systemd's own units do, each unit points at the installed pages (systemctl help UNIT), and
# each it names is one of ours, installed above.
for unit in "$SRC"/packaging/*.service.in "$SRC"/packaging/*.socket.in "$SRC"/packaging/*.path.in; do
    u=$(basename "$unit" .in)
    refs=$(sed -n 's/^Documentation=//p' "$unit" | tr ' ' '\n' | sed -n 's/^man://p' | xargs)
    expect_match "$u: Documentation= names a manual page" '[a-z]' "$refs"
    for ref in $refs; do
        name=${ref%(*} section=${ref#*(}
        section=${section%)}
        expect_eq "$u: Documentation=man:$ref is installed" yes \
            "$([ -f "man$section/$name.$section" ] && echo yes)"
    done
done

printf '\n== transient-allocd(8) and allocator/interface.hpp\n'
errors=$(grep -oE '"io\.transient\.Allocator\.[A-Za-z]+"' "$SRC/allocator/interface.hpp" |
    sed -E 's/.*\.([A-Za-z]+)"/\1/' | sort -u)
expect_match "the errors were found in interface.hpp" "NameInUse" "$errors"
text=$(man_render man8/transient-allocd.8)
for e in $errors; do
    expect_match "transient-allocd(8) names the error $e" "(^|[^A-Za-z])$e([^A-Za-z]|$)" "$text"
done

printf '\n== allocd.conf(5) and allocator/config.cpp\n'
[ -f man5/allocd.conf.5 ] || { checks_summary docs.man; exit 1; }
keys=$(sed -n '/kKeys\[\] = {/,/^};/p' "$SRC/allocator/config.cpp" | grep -oE '\{"[A-Za-z]+",' |
    tr -d '{",' | sort | xargs)
expect_match "the keys were found in config.cpp" "ContainerRange" "$keys"
text=$(man_render man5/allocd.conf.5)
expect_eq "allocd.conf(5) OPTIONS describes exactly the keys config.cpp reads" "$keys" \
    "$(man_tags "$(man_section OPTIONS "$text")" | grep -oE '^[A-Za-z]+=' | tr -d = | sort | xargs)"
expect_eq "allocd.conf.example names exactly those keys" "$keys" \
    "$(grep -oE '^#?[A-Za-z]+=' "$SRC/allocator/allocd.conf.example" | tr -d '#=' | sort | xargs)"

checks_summary docs.man
