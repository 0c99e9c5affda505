# shellcheck shell=bash
# Command-line options for a shell script, declared once as shell variables.
#
# Source this file after declaring the options with their defaults:
#
#     nj=4             # number of parallel jobs
#     use_gpu=false    # decode on the GPU
#     help_message="Usage: $0 [options] <data-dir>"
#     . utils/parse_options.sh
#
# Then `--nj 8`, `--nj=8`, `--use-gpu true` and `--use_gpu=true` set the variables: dashes in an
# option name become underscores. An option exists exactly when a lowercase, non-exported, scalar
# variable of that name is set (help_message and parse_options_positional excepted), so an
# unknown or misspelt option is an error rather than a silently ignored flag. The current value
# gives the type: true or false makes the option boolean (only true or false accepted), an
# integer (e.g. 4, 0, -1) makes it an integer option (only integers accepted; whether 0 or -1
# makes sense is the script's check).
#
# --help / -h prints help_message, then every option with its current value, in the order the
# script declares them, each followed by the `# comment` at the end of its declaration line.
#
# Every argument must be an option: a single-dash word (-nj) or any other word is an error
# naming it. A script that takes positional arguments says so before sourcing this file:
#
#     parse_options_positional=true
#     . utils/parse_options.sh
#     [ $# -eq 2 ] || { echo "${help_message}" >&2; exit 1; }
#
# Then parsing stops at the first word that does not start with `-` (a lone `-` counts as a
# word), or just after `--`; the arguments that remain are the script's positional parameters.
# Options go first: one after a positional word is an error; put `--` before positional words
# that start with `-`. Safe under `set -euo pipefail`.

_parse_options_script=${BASH_SOURCE[1]:-}

_parse_options_die() {
    echo "$0: $*" >&2
    exit 1
}

# Whether $1 names a variable this file may set.
_parse_options_is_option() {
    local _name=$1 _declaration _flags
    [[ ${_name} =~ ^[a-z][a-z0-9_]*$ ]] || return 1
    case "${_name}" in help_message | parse_options_positional) return 1 ;; esac
    _declaration=$(declare -p "${_name}" 2>/dev/null) || return 1
    _flags=${_declaration#declare -}
    _flags=${_flags%% *}
    [[ ${_flags} != *[xaA]* ]]
}

_parse_options_help() {
    local _name _line _comment _width=28 _assignment
    local -a _names=()
    local -A _comments=() _listed=()
    if [ -n "${help_message:-}" ]; then
        printf '%s\n\n' "${help_message%$'\n'}"
    fi
    # Declaration order and comments come from the script's own top-level `name=value` lines.
    if [ -n "${_parse_options_script}" ] && [ -r "${_parse_options_script}" ]; then
        while IFS= read -r _line || [ -n "${_line}" ]; do
            [[ ${_line} == *parse_options.sh* ]] && break
            [[ ${_line} =~ ^([a-z][a-z0-9_]*)= ]] || continue
            _name=${BASH_REMATCH[1]}
            if ! _parse_options_is_option "${_name}" || [ -n "${_listed[${_name}]:-}" ]; then
                continue
            fi
            _listed[${_name}]=1
            _names+=("${_name}")
            _comment=""
            if [[ ${_line} =~ [[:space:]]#[[:space:]]*(.*)$ ]]; then
                _comment=${BASH_REMATCH[1]}
            fi
            _comments[${_name}]=${_comment}
        done < "${_parse_options_script}"
    fi
    # Options the scan could not see (declared in a sourced file or a `bash -c` string).
    while IFS= read -r _name; do
        if _parse_options_is_option "${_name}" && [ -z "${_listed[${_name}]:-}" ]; then
            _names+=("${_name}")
        fi
    done < <(compgen -v)
    echo "Options (current values):"
    for _name in "${_names[@]}"; do
        _assignment=$(printf -- '--%s=%q' "${_name}" "${!_name}")
        [ -z "${!_name}" ] && _assignment="--${_name}=''"
        _comment=${_comments[${_name}]:-}
        if [ -n "${_comment}" ]; then
            printf '  %-*s %s\n' "${_width}" "${_assignment}" "${_comment}"
        else
            printf '  %s\n' "${_assignment}"
        fi
    done
}

case "${parse_options_positional:=false}" in
    true | false) ;;
    *) _parse_options_die "parse_options_positional must be true or false," \
        "got '${parse_options_positional}'" ;;
esac
_parse_options_end=false  # true once `--` ended the options

while [ $# -gt 0 ]; do
    case "$1" in
        --)
            shift
            _parse_options_end=true
            break
            ;;
        -h | --help)
            _parse_options_help
            exit 0
            ;;
        --*=*)
            _parse_options_name=${1%%=*}
            _parse_options_value=${1#*=}
            _parse_options_nargs=1
            ;;
        --*)
            [ $# -ge 2 ] || _parse_options_die "option $1 needs a value"
            _parse_options_name=$1
            _parse_options_value=$2
            _parse_options_nargs=2
            ;;
        -?*)
            # Most likely a misspelt --option: ignoring it would silently run with defaults.
            _parse_options_die "unexpected argument '$1': options start with -- (see $0 --help)"
            ;;
        *)
            break
            ;;
    esac
    _parse_options_name=${_parse_options_name#--}
    _parse_options_name=${_parse_options_name//-/_}
    _parse_options_is_option "${_parse_options_name}" \
        || _parse_options_die "unknown option --${_parse_options_name} (see $0 --help)"
    case "${!_parse_options_name}" in
        true | false)
            case "${_parse_options_value}" in
                true | false) ;;
                *) _parse_options_die "option --${_parse_options_name} is boolean:" \
                    "expected true or false, got '${_parse_options_value}'" ;;
            esac
            ;;
        *)
            # `--nj abc` would only fail later, in arithmetic or a job spec (JOB=1:abc).
            if [[ ${!_parse_options_name} =~ ^-?[0-9]+$ ]] \
                && ! [[ ${_parse_options_value} =~ ^-?[0-9]+$ ]]; then
                _parse_options_die "--${_parse_options_name}: '${_parse_options_value}'" \
                    "is not an integer"
            fi
            ;;
    esac
    printf -v "${_parse_options_name}" '%s' "${_parse_options_value}"
    shift "${_parse_options_nargs}"
done

if [ $# -gt 0 ]; then
    if [ "${parse_options_positional}" != true ]; then
        _parse_options_die "unexpected argument '$1': $0 takes no positional arguments" \
            "(see $0 --help)"
    fi
    if [ "${_parse_options_end}" = false ]; then
        # An option after the first word would otherwise pass as a positional argument.
        for _parse_options_value in "$@"; do
            case "${_parse_options_value}" in
                -?*) _parse_options_die "option ${_parse_options_value} after the positional" \
                    "argument '$1': options go first (see $0 --help)" ;;
            esac
        done
    fi
fi
unset -v _parse_options_script _parse_options_name _parse_options_value _parse_options_nargs \
    _parse_options_end
unset -f _parse_options_die _parse_options_is_option _parse_options_help
