# SPDX-License-Identifier: LGPL-2.1-or-later
# shellcheck shell=bash
#
# The checks of every shell test: each one prints "ok    WHAT" or "FAIL  WHAT" followed by what
# was expected and what came instead, and is counted. Sourced by tests/integration/lib.sh (which
# offers them as it_pass, it_fail, it_expect_*) and by the scripts in tests/system/.
#   pass WHAT                        a passed check
#   fail WHAT [DETAIL...]            a failed check; every DETAIL is printed on its own line
#   expect_eq WHAT EXPECTED ACTUAL
#   expect_match WHAT ERE TEXT       TEXT matches the extended regular expression ERE
#   expect_no_match WHAT ERE TEXT
#   checks_summary NAME [NOTE]       prints "NAME: P checks passed, F failed[ NOTE]"; returns 1 if
#                                    any check failed
# CHECKS_PASSED and CHECKS_FAILED hold the tally.

CHECKS_PASSED=0
CHECKS_FAILED=0

pass() {
    CHECKS_PASSED=$((CHECKS_PASSED + 1))
    printf 'ok    %s\n' "$1"
}

fail() {
    CHECKS_FAILED=$((CHECKS_FAILED + 1))
    printf 'FAIL  %s\n' "$1"
    shift
    local line
    for line in "$@"; do
        printf '%s\n' "$line" | sed 's/^/        /'
    done
}

expect_eq() {  # WHAT EXPECTED ACTUAL
    if [ "$2" == "$3" ]; then
        pass "$1"
    else
        fail "$1" "expected: $2" "got:      $3"
    fi
}

expect_match() {  # WHAT ERE TEXT
    if [[ $3 =~ $2 ]]; then
        pass "$1"
    else
        fail "$1" "expected to match: /$2/" "got: $3"
    fi
}

expect_no_match() {  # WHAT ERE TEXT
    if [[ $3 =~ $2 ]]; then
        fail "$1" "expected NOT to match: /$2/" "got: $3"
    else
        pass "$1"
    fi
}

checks_summary() {  # NAME [NOTE]
    printf '\n%s: %d checks passed, %d failed%s\n' "$1" "$CHECKS_PASSED" "$CHECKS_FAILED" \
        "${2:+ $2}"
    [ "$CHECKS_FAILED" -eq 0 ]
}
