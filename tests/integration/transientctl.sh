#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# transientctl as a user runs it: every command, in text and --json (parsed with jq), --socket,
# and the errors: duplicate name, unknown range, invalid names and sizes, release of an unknown
# range, no daemon running. Errors must exit non-zero with a message on stderr.
. "$(dirname "$0")/lib.sh"

it_section "no daemon running"
it_expect_fail "list without a daemon" "$CTL" list
it_expect_fail "allocate without a daemon" "$CTL" allocate web
it_expect_eq "... and it says so quickly (no hang)" yes \
    "$(t0=$SECONDS; timeout 10 "$CTL" list >/dev/null 2>&1; ((SECONDS - t0 <= 3)) && echo yes || echo no)"

it_section "start the daemon"
it_daemon_start
it_expect_ok "list on an empty table succeeds" "$CTL" list
it_run it_ctl_json list
it_expect_eq "list --json on an empty table is []" "[]" "$(jq -c . <<<"$IT_OUT" 2>&1)"

it_section "allocate"
it_expect_ok "allocate web (default size)" "$CTL" allocate web
echo "$IT_OUT"
it_expect_match "allocate web prints the range" "web" "$IT_OUT"
it_run it_ctl_json allocate solo --size 1
it_expect_eq "allocate solo --size 1 --json exits 0" 0 "$IT_RC"
it_expect_eq "allocate --json gives name and size" '{"name":"solo","size":1}' \
    "$(jq -c '{name, size}' <<<"$IT_OUT" 2>&1)"
S=$(jq -r .start <<<"$IT_OUT")
it_expect_eq "solo is in the dynamic pool" yes "$( ((S >= 61184 && S <= 65519)) && echo yes || echo "no ($S)")"
it_expect_ok "allocate big --size 65536" "$CTL" allocate big --size 65536
name22=abcdefghij_klmnopqrs-2
it_expect_ok "allocate a 22-byte name (the maximum)" "$CTL" allocate "$name22" --size 1
it_expect_ok "allocate _under-score (leading underscore, dash)" "$CTL" allocate _under-score --size 1

it_section "show"
it_run it_ctl_json show web
it_expect_eq "show web --json" '{"name":"web","size":65536,"owner":0}' \
    "$(jq -c '{name, size, owner}' <<<"$IT_OUT" 2>&1)"
B=$(jq -r .start <<<"$IT_OUT")
it_expect_eq "web is 64K-aligned in the container pool" yes \
    "$( ((B % 65536 == 0 && B >= 524288)) && echo yes || echo "no ($B)")"
it_expect_eq "show --json has a creation time" true "$(jq '.created > 0' <<<"$IT_OUT" 2>&1)"
it_expect_ok "show web" "$CTL" show web
echo "$IT_OUT"
it_expect_match "show web names it and its start" "web.*$B|$B.*web" "$(tr '\n' ' ' <<<"$IT_OUT")"
it_run it_ctl_json show $((B + 12345))
it_expect_eq "show UID inside web --json" "web $B" "$(jq -r '"\(.name) \(.start)"' <<<"$IT_OUT" 2>&1)"
it_expect_ok "show UID inside web" "$CTL" show $((B + 65535))
it_expect_match "show UID names the range" "web" "$IT_OUT"
it_run it_ctl_json show "$S"
it_expect_eq "show solo's UID --json" "solo" "$(jq -r .name <<<"$IT_OUT" 2>&1)"

it_section "list"
it_expect_ok "list" "$CTL" list
echo "$IT_OUT"
for n in web solo big "$name22" _under-score; do
    it_expect_match "list shows $n" "(^|[[:space:]])$n([[:space:]]|$)" "$IT_OUT"
done
it_run it_ctl_json list
it_expect_eq "list --json is an array of the five ranges" "_under-score $name22 big solo web" \
    "$(jq -r '.[].name' <<<"$IT_OUT" 2>&1 | sort | xargs)"
it_expect_eq "list --json entries have name, start, size, owner, created" true \
    "$(jq 'all(.[]; has("name") and has("start") and has("size") and has("owner") and has("created"))' \
        <<<"$IT_OUT" 2>&1)"
it_expect_eq "list --json agrees with show about web" "$B" "$(jq '.[] | select(.name == "web") | .start' <<<"$IT_OUT")"
it_expect_eq "no two listed ranges overlap" true \
    "$(jq '[sort_by(.start) | . as $r | range(1; length) | $r[. - 1].start + $r[. - 1].size <= $r[.].start] | all' <<<"$IT_OUT" 2>&1)"

it_section "--socket"
mv "$IT_SOCKET" "$IT_RUNTIME/elsewhere"
it_expect_fail "without the default socket, list fails" "$CTL" list
it_expect_ok "list --socket PATH" "$CTL" --socket "$IT_RUNTIME/elsewhere" list
it_expect_match "... shows the ranges" "web" "$IT_OUT"
mv "$IT_RUNTIME/elsewhere" "$IT_SOCKET"

it_section "errors"
it_expect_fail "allocate an existing name" "$CTL" allocate web
it_expect_match "... the message names the problem" "web|exist|in use|already" "$IT_ERR"
it_expect_fail "allocate an existing name, other size" "$CTL" allocate solo --size 65536
for bad in 1bad abcdefghij_klmnopqrs-23 "with space" "slash/name" "" "dot.name" "-lead" "ümlaut"; do
    it_expect_fail "allocate invalid name '$bad'" "$CTL" allocate -- "$bad"
    it_expect_match "... the message says the name is wrong" '[Nn]ame' "$IT_ERR"
done
for size in 7 0 2 65535 65537 -1 abc; do
    it_expect_fail "allocate --size $size" "$CTL" allocate sized --size "$size"
    it_expect_match "... the message says the size is wrong" '[Ss]ize' "$IT_ERR"
done
it_expect_fail "show an unknown name" "$CTL" show nope
it_expect_fail "show a UID outside every range" "$CTL" show 4242
it_expect_fail "release an unknown name" "$CTL" release nope
it_expect_fail "an unknown command" "$CTL" frobnicate
it_expect_fail "allocate without a name" "$CTL" allocate
it_run it_ctl_json list
it_expect_eq "the failed calls changed nothing" "_under-score $name22 big solo web" \
    "$(jq -r '.[].name' <<<"$IT_OUT" 2>&1 | sort | xargs)"

it_section "release"
it_expect_ok "release web" "$CTL" release web
it_expect_fail "show web after release" "$CTL" show web
it_expect_fail "release web twice" "$CTL" release web
it_expect_ok "release --json solo" it_ctl_json release solo
it_run it_ctl_json list
it_expect_eq "list --json after the releases" "_under-score $name22 big" \
    "$(jq -r '.[].name' <<<"$IT_OUT" 2>&1 | sort | xargs)"
it_expect_ok "allocate web again" "$CTL" allocate web

it_section "restart keeps the table"
before=$(it_ctl_json list | jq -c 'sort_by(.name)')
it_daemon_stop
it_expect_fail "list with the daemon stopped" "$CTL" list
it_daemon_start
it_expect_eq "after a restart list --json is the same" "$before" "$(it_ctl_json list | jq -c 'sort_by(.name)')"
it_daemon_kill9
it_daemon_start
it_expect_eq "after kill -9 and a restart list --json is the same" "$before" \
    "$(it_ctl_json list | jq -c 'sort_by(.name)')"

it_section "stop"
it_daemon_stop
it_finish
