# SPDX-License-Identifier: LGPL-2.1-or-later
# shellcheck shell=bash
#
# What the docs tests read out of --help texts and manual pages, so that docs.help and docs.man
# take the options from a help text the same way.
#   help_options TEXT        the long options a --help TEXT lists: those that start a line
#                            (after blanks and maybe "-X" or "-X,"), sorted, one a line
#   help_commands TEXT       the commands it lists: lowercase words indented by two blanks
#   help_variables TEXT      the TRANSIENT_* environment variables it names
#   man_render PAGE          the page as plain text, 80 columns
#   man_section NAME TEXT    one section of a rendered page, without its heading
#   man_tags SECTION_TEXT    the lines that start its entries (.TP tags), without the indent
#   man_options SECTION_TEXT the long options its entries are about, sorted
. "$(dirname "${BASH_SOURCE[0]}")/../lib/checks.sh"

help_options() {
    grep -oE '^ +(-[a-zA-Z],? +)?--[a-z][a-z-]*' <<<"$1" | grep -oE -- '--[a-z-]+' | sort -u || true
}

help_commands() {
    grep -oE '^  [a-z][a-z-]*( |$)' <<<"$1" | tr -d ' ' | sort -u || true
}

help_variables() {
    grep -oE 'TRANSIENT_[A-Z_]+' <<<"$1" | sort -u || true
}

man_render() {
    LC_ALL=C.UTF-8 MANWIDTH=80 MAN_KEEP_FORMATTING= man -l "$1" 2>/dev/null | col -bx
}

man_section() {
    awk -v want="$1" '/^[A-Z]/ { inside = ($0 == want); next } inside' <<<"$2"
}

# Entries of a section are indented by 7 columns, their text by 14.
man_tags() {
    grep -E '^       [^ ]' <<<"$1" | sed -E 's/^ +//' || true
}

man_options() {
    man_tags "$1" | grep -oE '^(-[a-zA-Z], )?--[a-z][a-z-]*' | grep -oE -- '--[a-z-]+' | sort -u || true
}
