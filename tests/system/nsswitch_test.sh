#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# nsswitch_test.sh - unit tests of packaging/transient-nsswitch on the sample files in
# nsswitch/: for every NAME.in, "add" must give NAME.added byte for byte, a second "add" must
# change nothing (not even the file's inode), and "remove" must give NAME.removed (or NAME.in when
# there is none) byte for byte. Plus: modes and symlinks survive, status reports, bad usage and
# missing files fail. The same for "add --subid"/"remove --subid" on the samples in
# nsswitch-subid/ (NAME.refused: add --subid must refuse, add --subid --force then gives
# NAME.added), and plain add must leave their subid: lines alone. Works on copies in a temporary
# directory; never touches /etc.
#
# Usage: nsswitch_test.sh [SCRIPT]   (default: packaging/transient-nsswitch of this checkout)
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SCRIPT=${1:-$HERE/../../packaging/transient-nsswitch}
SAMPLES=$HERE/nsswitch
SUBID_SAMPLES=$HERE/nsswitch-subid
TMP=$(mktemp -d "${TMPDIR:-/tmp}/transient-nsswitch-test.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

# shellcheck source=tests/lib/checks.sh
. "$HERE/../lib/checks.sh"

# same_bytes WHAT EXPECTED_FILE ACTUAL_FILE
same_bytes() {
    if cmp -s "$2" "$3"; then
        pass "$1"
    else
        fail "$1" "$(diff <(od -c "$2") <(od -c "$3") | head -n 20)"
    fi
}

# run_script ARGS...: runs the script; sets RC and ERR.
run_script() {
    RC=0
    ERR=$("$SCRIPT" "$@" 2>&1 >/dev/null) || RC=$?
}

[ -x "$SCRIPT" ] || { echo "nsswitch_test.sh: $SCRIPT is not executable" >&2; exit 1; }

for in_file in "$SAMPLES"/*.in; do
    name=$(basename "$in_file" .in)
    added=$SAMPLES/$name.added
    removed=$SAMPLES/$name.removed
    [ -f "$removed" ] || removed=$in_file
    f=$TMP/$name.conf
    cp "$in_file" "$f"

    run_script add "$f"
    [ $RC -eq 0 ] || fail "$name: add exits 0" "exit $RC: $ERR"
    same_bytes "$name: add gives $name.added" "$added" "$f"

    inode=$(stat -c %i "$f")
    run_script add "$f"
    same_bytes "$name: a second add changes nothing" "$added" "$f"
    if [ "$(stat -c %i "$f")" = "$inode" ] && [ $RC -eq 0 ]; then
        pass "$name: a second add does not rewrite the file"
    else
        fail "$name: a second add does not rewrite the file" "exit $RC, inode $inode -> $(stat -c %i "$f")"
    fi

    run_script remove "$f"
    [ $RC -eq 0 ] || fail "$name: remove exits 0" "exit $RC: $ERR"
    same_bytes "$name: remove after add gives $(basename "$removed")" "$removed" "$f"
    run_script remove "$f"
    same_bytes "$name: a second remove changes nothing" "$removed" "$f"
done

# ---- file handling ----

f=$TMP/mode.conf
cp "$SAMPLES/debian-default.in" "$f"
chmod 0640 "$f"
run_script add "$f"
if [ "$(stat -c %a "$f")" = 640 ]; then pass "add keeps the file's mode"; else fail "add keeps the file's mode" "mode is now $(stat -c %a "$f")"; fi

mkdir -p "$TMP/etc" "$TMP/real"
cp "$SAMPLES/debian-default.in" "$TMP/real/nsswitch.conf"
ln -s ../real/nsswitch.conf "$TMP/etc/nsswitch.conf"
run_script add "$TMP/etc/nsswitch.conf"
if [ -L "$TMP/etc/nsswitch.conf" ] && cmp -s "$SAMPLES/debian-default.added" "$TMP/real/nsswitch.conf"; then
    pass "add edits the target of a symlink and keeps the symlink"
else
    fail "add edits the target of a symlink and keeps the symlink" "$(ls -l "$TMP/etc/nsswitch.conf")"
fi
if [ -z "$(find "$TMP/etc" "$TMP/real" -name '.nsswitch.conf.*')" ]; then
    pass "no temporary file is left behind"
else
    fail "no temporary file is left behind" "$(find "$TMP/etc" "$TMP/real" -name '.nsswitch.conf.*')"
fi

# ---- status ----

f=$TMP/status.conf
cp "$SAMPLES/debian-default.in" "$f"
out=$("$SCRIPT" status "$f"); rc=$?
[ "$out $rc" = "disabled 1" ] && pass "status: disabled (1) before add" || fail "status: disabled (1) before add" "got: $out $rc"
"$SCRIPT" add "$f"
out=$("$SCRIPT" status "$f"); rc=$?
[ "$out $rc" = "enabled 0" ] && pass "status: enabled (0) after add" || fail "status: enabled (0) after add" "got: $out $rc"
cp "$SAMPLES/comments.in" "$f"
out=$("$SCRIPT" status "$f"); rc=$?
[ "$out $rc" = "disabled 1" ] && pass "status: a comment naming transient does not count" || fail "status: a comment naming transient does not count" "got: $out $rc"
printf 'passwd: files transient systemd\ngroup: files systemd\n' >"$f"
out=$("$SCRIPT" status "$f"); rc=$?
[ "$out $rc" = "partial 2" ] && pass "status: partial (2) with one line only" || fail "status: partial (2) with one line only" "got: $out $rc"

# ---- errors ----

run_script add "$TMP/does-not-exist"
[ $RC -ne 0 ] && pass "add on a missing file fails" || fail "add on a missing file fails" "exit 0"
[ ! -e "$TMP/does-not-exist" ] && pass "add does not create a missing file" || fail "add does not create a missing file"
run_script frobnicate "$f"
[ $RC -eq 2 ] && pass "an unknown command is a usage error (2)" || fail "an unknown command is a usage error (2)" "exit $RC"
run_script add "$f" extra
[ $RC -eq 2 ] && pass "too many arguments is a usage error (2)" || fail "too many arguments is a usage error (2)" "exit $RC"
mkdir -p "$TMP/ro"
cp "$SAMPLES/no-systemd.in" "$TMP/ro/nsswitch.conf"
chmod 0555 "$TMP/ro"
if [ "$(id -u)" -ne 0 ]; then
    run_script add "$TMP/ro/nsswitch.conf"
    [ $RC -ne 0 ] && pass "add fails when the file cannot be replaced" || fail "add fails when the file cannot be replaced" "exit 0"
fi
chmod 0755 "$TMP/ro"

# ---- the subid: line (add --subid / remove --subid) ----

subid_lines() { grep -a 'subid' "$1" || true; }

for in_file in "$SUBID_SAMPLES"/*.in; do
    name=subid/$(basename "$in_file" .in)
    base=${in_file%.in}
    removed=$base.removed
    [ -f "$removed" ] || removed=$in_file
    f=$TMP/subid.conf
    cp "$in_file" "$f"

    if [ -f "$base.refused" ]; then
        inode=$(stat -c %i "$f")
        run_script add --subid "$f"
        if [ $RC -eq 3 ] && [[ $ERR == *"only one can be active"*"--force"* ]]; then
            pass "$name: add --subid refuses another provider (3) and says why"
        else
            fail "$name: add --subid refuses another provider (3) and says why" "exit $RC: $ERR"
        fi
        if cmp -s "$in_file" "$f" && [ "$(stat -c %i "$f")" = "$inode" ]; then
            pass "$name: the refused add leaves the file alone"
        else
            fail "$name: the refused add leaves the file alone"
        fi
        run_script add --subid --force "$f"
    else
        run_script add --subid "$f"
    fi
    [ $RC -eq 0 ] || fail "$name: add --subid exits 0" "exit $RC: $ERR"
    same_bytes "$name: add --subid gives $(basename "$base").added" "$base.added" "$f"

    inode=$(stat -c %i "$f")
    run_script add --subid --force "$f"
    if [ $RC -eq 0 ] && cmp -s "$base.added" "$f" && [ "$(stat -c %i "$f")" = "$inode" ]; then
        pass "$name: a second add --subid does not rewrite the file"
    else
        fail "$name: a second add --subid does not rewrite the file" "exit $RC: $ERR"
    fi

    before=$(subid_lines "$f")
    run_script add "$f"
    after=$(subid_lines "$f")
    run_script remove "$f"
    if [ "$before" = "$after" ] && [ "$before" = "$(subid_lines "$f")" ]; then
        pass "$name: plain add and remove leave the subid: line alone"
    else
        fail "$name: plain add and remove leave the subid: line alone" "$before -> $after"
    fi
    cp "$base.added" "$f"

    run_script remove --subid "$f"
    [ $RC -eq 0 ] || fail "$name: remove --subid exits 0" "exit $RC: $ERR"
    same_bytes "$name: remove --subid after add gives $(basename "$removed")" "$removed" "$f"
    run_script remove --subid "$f"
    same_bytes "$name: a second remove --subid changes nothing" "$removed" "$f"
done

f=$TMP/subid-mode.conf
cp "$SUBID_SAMPLES/no-subid-line.in" "$f"
chmod 0640 "$f"
run_script add --subid "$f"
if [ "$(stat -c %a "$f")" = 640 ]; then pass "add --subid keeps the file's mode"; else fail "add --subid keeps the file's mode" "mode is now $(stat -c %a "$f")"; fi
run_script add --force "$f"
[ $RC -eq 2 ] && pass "--force without --subid is a usage error (2)" || fail "--force without --subid is a usage error (2)" "exit $RC"
run_script status --subid "$f"
[ $RC -eq 2 ] && pass "status --subid is a usage error (2)" || fail "status --subid is a usage error (2)" "exit $RC"
run_script add --frobnicate "$f"
[ $RC -eq 2 ] && pass "an unknown option is a usage error (2)" || fail "an unknown option is a usage error (2)" "exit $RC"
run_script add --subid "$TMP/does-not-exist"
[ $RC -ne 0 ] && [ ! -e "$TMP/does-not-exist" ] && pass "add --subid on a missing file fails" || fail "add --subid on a missing file fails" "exit $RC"
help=$("$SCRIPT" --help)
[[ $help == *"add|remove --subid [--force]"*"useradd"* ]] && pass "--help documents --subid and what it changes for useradd" || fail "--help documents --subid and what it changes for useradd" "$help"

checks_summary nsswitch_test
