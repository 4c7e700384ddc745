#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# docs.help: the command line of every binary, from a table. For each one:
#   - --help (and -h) exits 0, prints the usage on stdout and nothing on stderr;
#   - every option its parser accepts (the getopt table in its source) is listed in --help, and
#     every option --help lists is accepted (OPTION [ARG] --help exits 0);
#   - an unknown option, an option missing its argument, a stray operand or unknown command and a
#     malformed operand exit 2 with a message on stderr that names what was wrong and points at
#     --help; a file that is not there is named, with an exit status of its own.
# Usage: help.sh SOURCE_DIR ALLOCD USERDBD CTL      (transient-nsswitch comes from SOURCE_DIR)
set -euo pipefail

SRC=$1
. "$(dirname "$0")/lib.sh"

# name | path | sources of its option table | an option that takes an argument | a stray operand
# | a bad operand (words), what its message must name, the exit status it must give
TABLE=(
    "transient-allocd|$2|base/daemon.cpp allocator/main.cpp|--config|stray|||"
    "transient-userdbd|$3|base/daemon.cpp userdb/main.cpp||stray|||"
    "transientctl|$4|ctl/transientctl.cpp|--socket|no-such-command|show 99999999999|UID '99999999999'|2"
    "transient-nsswitch|$SRC/packaging/transient-nsswitch|packaging/transient-nsswitch||no-such-command|status /nonexistent/nsswitch.conf|/nonexistent/nsswitch.conf: no such file|3"
)

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
# Nothing here may reach a daemon or the host's files: the options are only parsed.
export TRANSIENT_RUNTIME_DIR=$TMP/run

run() {  # CMD...: sets OUT, ERR, RC
    RC=0
    timeout 30 "$@" </dev/null >"$TMP/out" 2>"$TMP/err" || RC=$?
    OUT=$(cat "$TMP/out")
    ERR=$(cat "$TMP/err")
}

# The long options a parser accepts, one per line: getopt_long() tables ({"name", ..._argument},
# a daemon's DaemonOption {"name", &variable}) and the case patterns of a shell script's main().
parser_options() {
    local f
    for f in "$@"; do
        case "$f" in
            *.cpp)
                grep -oE '\{"[a-z][a-z-]*", *(no_argument|required_argument|&)' "$SRC/$f" |
                    sed -E 's/^\{"([a-z-]+)".*/--\1/' || true ;;
            *)
                sed -n '/^main() {/,/^}/p' "$SRC/$f" | grep -oE '(^|[|[:space:]])--[a-z][a-z-]*' |
                    grep -oE -- '--[a-z-]+' || true ;;
        esac
    done | sort -u
}

for row in "${TABLE[@]}"; do
    IFS='|' read -r name bin sources arg_option stray bad_operand bad_named bad_rc <<<"$row"
    printf '\n== %s\n' "$name"

    run "$bin" --help
    expect_eq "$name --help exits 0" 0 "$RC"
    expect_eq "$name --help writes nothing to stderr" "" "$ERR"
    expect_match "$name --help starts with its usage" "^(Usage: )?$name " "$OUT"
    help=$OUT
    run "$bin" -h
    expect_eq "$name -h is --help" "0 $help" "$RC $OUT"

    listed=$(help_options "$help")
    accepted=$(parser_options $sources)
    expect_match "$name: its parser's options were found in the source" "--help" "$accepted"
    expect_eq "$name --help lists exactly the options its parser accepts" \
        "$(echo $accepted)" "$(echo $listed)"
    for opt in $listed; do
        [ "$opt" = --help ] && continue
        # An option documented with an argument ("--config PATH") gets one: a number for N.
        placeholder=$(grep -oE -- "^ +(-[a-zA-Z],? +)?$opt +[A-Z]+" <<<"$help" |
            awk '{ print $NF }' || true)
        if [ -n "$placeholder" ]; then
            value=x
            [ "$placeholder" = N ] && value=1
            run "$bin" "$opt" "$value" --help
        else
            run "$bin" "$opt" --help
        fi
        expect_eq "$name accepts $opt, as --help says" "0" "$RC${ERR:+ ($ERR)}"
    done

    run "$bin" --no-such-option
    expect_eq "$name --no-such-option exits 2" 2 "$RC"
    expect_match "$name: the unknown option is named" "no-such-option" "$ERR"
    expect_match "$name: the message points at --help" "'$name --help'" "$ERR"
    expect_eq "$name: a usage error prints nothing on stdout" "" "$OUT"

    if [ -n "$arg_option" ]; then
        run "$bin" "$arg_option"
        expect_eq "$name $arg_option without its argument exits 2" 2 "$RC"
        expect_match "$name: the option missing its argument is named" "${arg_option#--}" "$ERR"
        expect_match "$name: ... and the message points at --help" "'$name --help'" "$ERR"
    fi

    run "$bin" "$stray"
    expect_eq "$name $stray exits 2" 2 "$RC"
    expect_match "$name: '$stray' is named" "'$stray'" "$ERR"
    expect_match "$name: ... and the message points at --help" "'$name --help'" "$ERR"

    if [ -n "$bad_operand" ]; then
        run "$bin" $bad_operand
        expect_eq "$name $bad_operand exits $bad_rc" "$bad_rc" "$RC"
        expect_match "$name: the message says $bad_named" "$bad_named" "$ERR"
        [ "$bad_rc" != 2 ] ||
            expect_match "$name: ... and points at --help" "'$name --help'" "$ERR"
    fi
done

checks_summary docs.help
