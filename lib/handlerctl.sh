# shellcheck shell=sh
# Shared by serverStarter.sh and killer.sh, which source it once they have found the project:
#
#   . "$PROJECT_DIR/lib/handlerctl.sh"
#
# Needs from the sourcing script: PROJECT_DIR (the project's real path) and die (prints its message under the
# script's own name, then exits 1). Sets HANDLER, RUN_DIR, PID_FILE, NAP and NAP_TENTHS.
#
# A process is "ours" only when its command line has this project's handler.py (absolute path) as an
# argument: a PID file pointing at any other process is stale, and that process is left alone.

HANDLER="$PROJECT_DIR/handler.py"
RUN_DIR="$PROJECT_DIR/run"
# shellcheck disable=SC2034 # used by the sourcing scripts, as are NAP and NAP_TENTHS below
PID_FILE="$RUN_DIR/handler.pid"

# POSIX sleep takes whole seconds only; use tenths where the system's sleep allows it.
# shellcheck disable=SC2034
if sleep 0.01 2>/dev/null; then
    NAP=0.1
    NAP_TENTHS=1
else
    NAP=1
    NAP_TENTHS=10
fi

# Seconds (integer or decimal, e.g. 2 or 0.5) -> tenths of a second, for the polling loops.
tenths() {
    case $2 in
        '' | *[!0-9.]* | *.*.* | .) die "$1 must be a number of seconds, got '$2'" ;;
    esac
    int=${2%%.*}
    int=${int#"${int%%[!0]*}"} # 08 would read as octal
    frac=${2#"$int"}
    frac=${frac#.}
    digit=${frac%"${frac#?}"}
    echo $(( ${int:-0} * 10 + ${digit:-0} ))
}

valid_pid() {
    case $1 in
        '' | *[!0-9]*) return 1 ;;
        *) return 0 ;;
    esac
}

# Alive = exists and is not a zombie (an exited handler may wait unreaped under a parent that never reaps).
is_alive() {
    if [ -d /proc/self ]; then
        stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
        state=${stat##*) }
        state=${state%% *}
        [ "$state" != Z ] && [ "$state" != X ]
    else
        state=$(ps -p "$1" -o stat= 2>/dev/null) || return 1
        case $state in Z*) return 1 ;; esac
    fi
}

# Ours = one of its arguments is exactly this project's handler.py, so a reused PID is never taken for ours.
is_ours() {
    if [ -d /proc/self ]; then
        tr '\0' '\n' 2>/dev/null <"/proc/$1/cmdline" | grep -Fxq -- "$HANDLER"
    else
        case " $(ps -p "$1" -o args= 2>/dev/null) " in
            *" $HANDLER "*) return 0 ;;
            *) return 1 ;;
        esac
    fi
}

running_ours() {
    is_alive "$1" && is_ours "$1"
}
