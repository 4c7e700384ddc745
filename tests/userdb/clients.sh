#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Real userdb clients agree with libnss_transient: with transient-userdbd serving the table at
# /run/systemd/userdb/io.transient.Ranges (private /run of the sandbox), getent and id through
# nss-systemd ("passwd: files systemd", the transient module NOT listed) print exactly what they
# print through libnss_transient; Debian's userdbctl shows the records (-s, -j); an unprivileged
# client resolves them; the endpoint keeps answering while the allocator is down and while
# clients misbehave.
. "$(dirname "$0")/../integration/lib.sh"

USERDBD=${TRANSIENT_USERDBD:?}
USERDBCTL=${TRANSIENT_USERDBCTL:?}
SOCK=$IT_USERDB_SOCKET
RAW="python3 $(dirname "$0")/../integration/varlink_raw.py"

it_require_userdb_clients "$USERDBCTL"

it_section "start transient-allocd and transient-userdbd"
it_daemon_start
it_expect_ok "transientctl allocate web" "$CTL" allocate web
it_expect_ok "transientctl allocate solo --size 1" "$CTL" allocate solo --size 1
B=$(it_range_start web)
S=$(it_range_start solo)
it_userdbd_start "$USERDBD"
USERDBD_PID=$IT_USERDBD_PID
it_expect_eq "the userdb socket is mode 0666" 666 "$(stat -c %a "$SOCK")"

# The same questions, asked of both sources.
queries=("passwd vu-web-0" "passwd vu-web-65535" "passwd $((B + 4242))" "passwd $S"
         "passwd vu-solo-0" "group vg-web-7" "group $((B + 65535))" "group $S"
         "passwd 2147352576" "group foreign-65534")
ask_all() {
    local q
    for q in "${queries[@]}"; do
        # shellcheck disable=SC2086
        printf '%s => %s\n' "$q" "$(getent $q || echo "exit $?")"
    done
    printf 'id => %s\n' "$(id $((B + 3)) 2>&1)"
    printf 'enumerate => %s\n' "$(getent passwd | grep -E '^v[ug]-' | sort | tr '\n' ' ')"
    printf 'enumerate groups => %s\n' "$(getent group | grep -E '^vg-' | sort | tr '\n' ' ')"
}

it_section "libnss_transient vs nss-systemd"
via_module=$(ask_all)
it_nsswitch_systemd
it_expect_no_match "the transient module is not listed" 'transient' \
    "$(grep -E '^(passwd|group):' /etc/nsswitch.conf)"
via_systemd=$(ask_all)
echo "$via_module"
if [ "$via_module" == "$via_systemd" ]; then
    it_pass "getent passwd/group, id and enumeration print the same through nss-systemd"
else
    it_fail "getent passwd/group, id and enumeration print the same through nss-systemd" \
        "$(diff <(echo "$via_module") <(echo "$via_systemd"))"
fi
it_expect_match "nss-systemd resolved the range (not an empty answer)" \
    "^passwd vu-web-0 => vu-web-0:x:$B:$B:UID 0 of transient range web:/:/usr/sbin/nologin" \
    "$via_systemd"
it_run setpriv --reuid=65534 --regid=65534 --clear-groups getent passwd vu-web-9
it_expect_eq "an unprivileged client resolves through nss-systemd" \
    "vu-web-9:x:$((B + 9)):$((B + 9)):UID 9 of transient range web:/:/usr/sbin/nologin" "$IT_OUT"

it_section "userdbctl"
it_run "$USERDBCTL" --no-pager -s io.transient.Ranges user vu-web-5
it_expect_match "userdbctl shows the user" "User name: vu-web-5" "$IT_OUT"
it_expect_match "userdbctl shows its UID" "UID: $((B + 5))" "$IT_OUT"
it_expect_match "userdbctl shows the service" "Service: io.transient.Ranges" "$IT_OUT"
it_run "$USERDBCTL" --no-pager -s io.transient.Ranges -j user $((B + 5))
it_expect_eq "userdbctl -j user: userName" vu-web-5 "$(jq -r .userName <<<"$IT_OUT")"
it_expect_eq "userdbctl -j user: service" io.transient.Ranges "$(jq -r .service <<<"$IT_OUT")"
it_expect_eq "userdbctl -j user: disposition" container "$(jq -r .disposition <<<"$IT_OUT")"
it_run "$USERDBCTL" --no-pager -s io.transient.Ranges -j group vg-solo-0
it_expect_eq "userdbctl -j group: gid" "$S" "$(jq -r .gid <<<"$IT_OUT")"
it_expect_eq "userdbctl -j group: disposition" dynamic "$(jq -r .disposition <<<"$IT_OUT")"
it_expect_eq "userdbctl enumerates one user per range" "vu-solo-0 vu-web-0" \
    "$(it_userdbctl_names "$USERDBCTL" user)"
it_expect_eq "userdbctl enumerates one group per range" "vg-solo-0 vg-web-0" \
    "$(it_userdbctl_names "$USERDBCTL" group)"
it_run setpriv --reuid=65534 --regid=65534 --clear-groups "$USERDBCTL" --no-pager \
    -s io.transient.Ranges -j user vu-web-1
it_expect_eq "an unprivileged userdbctl resolves" vu-web-1 "$(jq -r .userName <<<"$IT_OUT")"
it_run "$USERDBCTL" --no-pager -s io.transient.Ranges user vu-web-65536
it_expect_eq "userdbctl: no such user past the range's end" 1 "$IT_RC"

it_section "the endpoint does not need the allocator"
it_daemon_kill9
it_expect_eq "getent through nss-systemd with the allocator down" \
    "vu-web-2:x:$((B + 2)):$((B + 2)):UID 2 of transient range web:/:/usr/sbin/nologin" \
    "$(getent passwd $((B + 2)))"

it_section "misbehaving clients"
$RAW abuse "$SOCK" --idle 300 --ready "$IT_FILES/abuse.ready" --report "$IT_FILES/abuse.report" \
    >>"$IT_LOG/abuse.log" 2>&1 &
ABUSE=$!
for _ in $(seq 500); do [ -e "$IT_FILES/abuse.ready" ] && break; sleep 0.02; done
cat "$IT_FILES/abuse.report" 2>/dev/null || true
for q in '{"uid":-1}' '{"uid":18446744073709551615}' '{"uid":4294967295}' '{"uid":1e30}' \
        '{"userName":"'"$(head -c 100000 /dev/zero | tr '\0' v)"'"}' '{"userName":"../../etc"}' \
        '{"uid":"5"}' '{"userName":null,"uid":null}'; do
    it_run timeout 5 $RAW call "$SOCK" io.systemd.UserDatabase.GetUserRecord \
        "$(jq -c '. + {service:"io.transient.Ranges"}' <<<"$q" 2>/dev/null || echo '{}')"
    it_expect_match "a bad lookup gets an error, not a crash: ${q:0:40}" \
        '"error": ?"(io.systemd.UserDatabase.NoRecordFound|org.varlink.service.InvalidParameter|org.varlink.service.ExpectedMore)"|disconnect|closed' \
        "$IT_OUT $IT_ERR rc=$IT_RC"
done
t0=$(date +%s%N)
it_run getent passwd vu-web-3
t1=$(date +%s%N)
it_expect_eq "still answers with 300 idle and misbehaving clients" \
    "vu-web-3:x:$((B + 3)):$((B + 3)):UID 3 of transient range web:/:/usr/sbin/nologin" "$IT_OUT"
it_expect_eq "and answers within a second" yes "$( (((t1 - t0) < 1000000000)) && echo yes || echo "no: $(((t1 - t0) / 1000000)) ms")"
kill "$ABUSE" 2>/dev/null || true
wait "$ABUSE" 2>/dev/null || true
it_expect_eq "transient-userdbd survived" alive "$(kill -0 $USERDBD_PID 2>/dev/null && echo alive || echo dead)"
kill -TERM $USERDBD_PID
rc=0
wait $USERDBD_PID || rc=$?
it_expect_eq "transient-userdbd exits cleanly on SIGTERM" 0 "$rc"
it_finish
