#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# integration.completion: the bash completion of transientctl and transient-nsswitch
# (shell-completion/bash/), driven the way bash drives it (COMP_WORDS/COMP_CWORD set, the
# function registered by `complete -F` called, COMPREPLY read), with bash-completion loaded and
# a live allocator in the sandbox:
#   - the commands and options offered are exactly those --help lists;
#   - an option offered after a command is one transientctl accepts there, and one it refuses
#     there is not offered;
#   - release and show offer the names of the live ranges (release: not the imported ones),
#     from the daemon --socket names; --owner offers user names, --size the sizes.
# Environment: TRANSIENT_COMPLETION_DIR (shell-completion/bash of the source tree),
# TRANSIENT_NSSWITCH (packaging/transient-nsswitch).
. "$(dirname "$0")/../integration/lib.sh"
. "$(dirname "$0")/lib.sh"

BASH_COMPLETION=/usr/share/bash-completion/bash_completion
if [ ! -r "$BASH_COMPLETION" ]; then
    it_fail "bash-completion is installed ($BASH_COMPLETION; package bash-completion, scripts/deps.sh)"
    it_finish
fi
# bash-completion is written for interactive shells: not under set -eu.
set +eu
# shellcheck source=/dev/null
. "$BASH_COMPLETION"
. "$TRANSIENT_COMPLETION_DIR/transientctl"
. "$TRANSIENT_COMPLETION_DIR/transient-nsswitch"
set -eu

# complete WORD...: what completing the last WORD offers, sorted, on one line. The first WORD is
# the command as typed.
complete_words() {
    local spec function
    spec=$(complete -p "$1" 2>/dev/null) || { echo "(no completion for $1)"; return; }
    function=$(sed -nE 's/.*-F ([^ ]+).*/\1/p' <<<"$spec")
    COMP_WORDS=("$@")
    COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
    COMP_LINE="$*"
    COMP_POINT=${#COMP_LINE}
    COMPREPLY=()
    set +eu
    "$function" "$1" "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD - 1]}"
    set -eu
    printf '%s\n' "${COMPREPLY[@]}" | sort -u | xargs
}

# transientctl is completed under the name the user types: on PATH in the sandbox.
CTL_DIR=$(dirname "$CTL")
export PATH=$CTL_DIR:$PATH
[ "$(basename "$CTL")" = transientctl ] || it_fail "the client is called transientctl" "$CTL"

it_section "transientctl: registered, commands and options as --help lists them"
it_expect_match "complete -p transientctl names the function" "-F _transientctl" \
    "$(complete -p transientctl 2>&1)"
help=$(transientctl --help)
it_expect_eq "the commands" "$(help_commands "$help" | xargs)" "$(complete_words transientctl "")"
it_expect_eq "the options before a command" "$(help_options "$help" | xargs)" \
    "$(complete_words transientctl --)"
it_expect_eq "a prefix: transientctl rel" "release" "$(complete_words transientctl rel)"

it_daemon_start
it_expect_ok "allocate web" transientctl allocate web
it_expect_ok "allocate ci --size 1" transientctl allocate ci --size 1

it_section "the options of each command are the ones it accepts"
declare -A arg=([--socket]=$IT_SOCKET [--size]=1 [--owner]=root [--userns]=/proc/self/ns/user)
n=0
for command in $(help_commands "$help"); do
    offered=" $(complete_words transientctl "$command" x --) "
    for opt in $(help_options "$help"); do
        [ "$opt" = --help ] || [ "$opt" = --version ] && continue
        n=$((n + 1))
        case "$command" in
            allocate) operand=(a$n --size 1) ;;
            release) operand=(no-such-range) ;;
            show) operand=(web) ;;
            *) operand=() ;;
        esac
        # Only usage errors (2) count: a refused allocation is the daemon's business.
        [ "$opt" = --size ] && [ "$command" = allocate ] && operand=(a$n)
        it_run transientctl "$command" "${operand[@]}" "$opt" ${arg[$opt]:+"${arg[$opt]}"}
        if [ "$IT_RC" = 2 ]; then
            it_expect_no_match "$command does not offer $opt, which it refuses" " $opt " "$offered"
        else
            it_expect_match "$command offers $opt, which it accepts" " $opt " "$offered"
        fi
    done
done

it_section "range names from the live allocator"
all=$(transientctl list --json | jq -r '.[].name' | sort | xargs)
own=$(transientctl list --json | jq -r '.[] | select(.imported != true) | .name' | sort | xargs)
it_expect_match "the table holds web and ci" " ci (.* )?web " " $all "
it_expect_eq "show offers every live range" "$all" "$(complete_words transientctl show "")"
it_expect_eq "release offers every range it can release" "$own" \
    "$(complete_words transientctl release "")"
it_expect_eq "show w offers web" "web" "$(complete_words transientctl show w)"
it_expect_eq "after --json too" "web" "$(complete_words transientctl --json show w)"
it_expect_eq "with --socket naming the daemon" "web" \
    "$(complete_words transientctl --socket "$IT_SOCKET" show w)"
it_expect_eq "with --socket naming nothing: no names" "" \
    "$(complete_words transientctl --socket "$IT_FILES/none" show w)"
it_expect_eq "one operand only: nothing after show web" "" \
    "$(complete_words transientctl show web "")"
it_expect_eq "allocate takes a new name: none offered" "" "$(complete_words transientctl allocate "")"
it_expect_ok "release web" transientctl release web
it_expect_eq "a released range is not offered" "" "$(complete_words transientctl show w)"

it_section "option arguments"
it_expect_match "--owner offers user names" "(^| )root( |$)" \
    "$(complete_words transientctl allocate x --owner ro)"
it_expect_match "--owner=ro offers them too" "(^| )root( |$)" \
    "$(complete_words transientctl allocate x --owner = ro)"
it_expect_eq "--size offers the sizes" "1 65536" "$(complete_words transientctl allocate x --size "")"
it_expect_match "--userns offers files" "(^| )/proc/self( |$)" \
    "$(complete_words transientctl allocate x --userns /proc/sel)"

it_section "transient-nsswitch"
it_expect_match "complete -p transient-nsswitch names the function" "-F _transient_nsswitch" \
    "$(complete -p transient-nsswitch 2>&1)"
nhelp=$("$TRANSIENT_NSSWITCH" --help)
it_expect_eq "its commands and options, as --help lists them" \
    "$( (help_commands "$nhelp"; help_options "$nhelp"; echo -h) | sort -u | xargs)" \
    "$(complete_words transient-nsswitch "")"
it_expect_eq "then the file" "/etc/nsswitch.conf" \
    "$(complete_words transient-nsswitch add /etc/nsswitch.co)"
it_expect_eq "nothing after --help" "" "$(complete_words transient-nsswitch --help "")"

it_finish
