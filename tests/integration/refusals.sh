#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Refused requests are logged, but through the rate limit (allocator/events.hpp): a user who
# sends refused calls in a loop gets at most a burst of 20 lines per 5 s window into the log,
# and then one line saying how many were held back. Outside journald (here) each event is a
# plain "<5>Refused ..." line on the daemon's stderr.
. "$(dirname "$0")/lib.sh"

it_section "one refusal is logged with who, what and why"
it_daemon_start
it_expect_fail "release of a range that does not exist" "$CTL" release nope
it_expect_match "the daemon's log has the refusal" \
    "^<5>Refused ReleaseRange of UID 0 for range 'nope': io.transient.Allocator.NoSuchRange" \
    "$(grep 'Refused' "$IT_LOG/allocd.log" || true)"

it_section "a flood of refusals is cut to the burst"
# 100 refused calls in one write: the daemon answers them within a window or two.
msgs=()
for i in $(seq 100); do
    msgs+=("{\"method\":\"io.transient.Allocator.ReleaseRange\",\"parameters\":{\"name\":\"nope$i\"}}")
done
it_run python3 "$IT_DIR/varlink_raw.py" pipeline "$IT_SOCKET" "${msgs[@]}"
it_expect_eq "every call was answered NoSuchRange" 100 \
    "$(grep -c 'io.transient.Allocator.NoSuchRange' <<<"$IT_OUT" || true)"
logged=$(grep -c "Refused ReleaseRange" "$IT_LOG/allocd.log" || true)
echo "info  101 refusals, ${logged} logged"
it_expect_eq "at most a burst of 20 per window (two windows at most here)" yes \
    "$( ((logged >= 20 && logged <= 40)) && echo yes || echo "no ($logged of 101)")"
sleep 5.2
"$CTL" release after-the-window >/dev/null 2>&1 || true
it_expect_match "the next window says how many were held back" \
    '^<4>Suppressed [0-9]+ messages about refused requests\.' \
    "$(grep 'Suppressed' "$IT_LOG/allocd.log" || true)"
it_expect_match "and logs the next refusal again" "for range 'after-the-window'" \
    "$(grep 'Refused' "$IT_LOG/allocd.log" | tail -n 1)"

it_daemon_stop
it_finish
