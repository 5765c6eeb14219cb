#!/bin/sh
# Start the agent manager (python handler.py --serve) in the background, detached from the terminal.
#
#   sh serverStarter.sh                   starts: python handler.py --serve
#   sh serverStarter.sh ARG...            starts: python handler.py ARG...
#
# Output goes to logs/handler.log, the PID to run/handler.pid; stop it with: sh killer.sh
# Settings (environment):
#   HANDLER_START_WAIT   seconds to watch the new handler before calling the start good (default 2);
#                        a line matching HANDLER_READY_PATTERN in the log ends the wait early
#   HANDLER_READY_PATTERN  extended regex, case-insensitive (default: the word "ready" or "listening";
#                        whole words, so "already in use" is no ready line)
#   HANDLER_LOCK_WAIT    seconds to wait for another start in progress (default HANDLER_START_WAIT + 30)
#
# A process is "ours" only when its command line has this project's handler.py (absolute path) as an
# argument: a PID file pointing at any other process is stale, and that process is left alone
# (lib/handlerctl.sh, shared with killer.sh).

die() {
    echo "serverStarter.sh: $*" >&2
    exit 1
}

# The project is where this script really lives (following symlinks to it), never $PWD or $HOME. Found here,
# not in lib/handlerctl.sh with the rest of what killer.sh shares: that file is found through it.
script=$0
while [ -L "$script" ] && target=$(readlink "$script"); do
    case $target in /*) script=$target ;; *) script=$(dirname -- "$script")/$target ;; esac # relative to the link
done
PROJECT_DIR=$(CDPATH='' cd -- "$(dirname -- "$script")" && pwd -P) || die "cannot find the project directory from $0"
# shellcheck source=SCRIPTDIR/lib/handlerctl.sh disable=SC1091 # followed with -x; also linted on its own
. "$PROJECT_DIR/lib/handlerctl.sh"

LOCK_DIR="$RUN_DIR/handler.lock"
LOG_DIR="$PROJECT_DIR/logs"
LOG_FILE="$LOG_DIR/handler.log"
KILLER="$PROJECT_DIR/killer.sh"
# Quoted only when needed, so the printed stop command can be pasted as it is.
case $KILLER in
    *[!A-Za-z0-9_./-]*) STOP_CMD="sh '$KILLER'" ;;
    *) STOP_CMD="sh $KILLER" ;;
esac

START_WAIT=${HANDLER_START_WAIT:-2}
READY_PATTERN=${HANDLER_READY_PATTERN:-(^|[^[:alnum:]])(ready|listening)([^[:alnum:]]|$)}

start_wait_tenths=$(tenths HANDLER_START_WAIT "$START_WAIT") || exit 1
if [ -n "${HANDLER_LOCK_WAIT:-}" ]; then
    lock_wait_tenths=$(tenths HANDLER_LOCK_WAIT "$HANDLER_LOCK_WAIT") || exit 1
else
    # Long enough for the other starter to watch its handler start.
    lock_wait_tenths=$((start_wait_tenths + 300))
fi

# --- lock: one starter at a time ------------------------------------------------------------------
# mkdir is atomic. The owner's PID is written inside; a lock whose owner is gone is taken over under a
# second mkdir guard, so two starters that both find it stale cannot both take it.
write_lock_owner() {
    printf '%s\n' "$$" >"$LOCK_DIR/pid.$$" && mv -f "$LOCK_DIR/pid.$$" "$LOCK_DIR/pid"
}

try_lock() {
    if mkdir "$LOCK_DIR" 2>/dev/null; then
        write_lock_owner && return 0
        rm -rf "$LOCK_DIR"
        return 1
    fi
    owner=$(cat "$LOCK_DIR/pid" 2>/dev/null)
    # No owner yet: its starter is between mkdir and writing its PID.
    valid_pid "$owner" || return 1
    is_alive "$owner" && return 1
    mkdir "$LOCK_DIR/breaking" 2>/dev/null || return 1
    owner=$(cat "$LOCK_DIR/pid" 2>/dev/null)
    if valid_pid "$owner" && ! is_alive "$owner" && write_lock_owner; then
        rmdir "$LOCK_DIR/breaking"
        echo "Took over the lock $LOCK_DIR left by a starter that is gone (PID $owner)."
        return 0
    fi
    rmdir "$LOCK_DIR/breaking" 2>/dev/null
    return 1
}

release_lock() {
    [ "$(cat "$LOCK_DIR/pid" 2>/dev/null)" = "$$" ] && rm -rf "$LOCK_DIR"
}

# Remove the PID file only while it still names this PID: another start or stop may have replaced it.
remove_pid_file() {
    [ "$(cat "$PID_FILE" 2>/dev/null)" = "$1" ] && rm -f "$PID_FILE"
}

# --- start ----------------------------------------------------------------------------------------
[ -f "$HANDLER" ] || die "$HANDLER not found"
mkdir -p "$RUN_DIR" "$LOG_DIR" || die "cannot create $RUN_DIR and $LOG_DIR"

trap 'release_lock' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

waited=0
until try_lock; do
    if [ "$waited" -ge "$lock_wait_tenths" ]; then
        die "another start is in progress (lock $LOCK_DIR, PID $(cat "$LOCK_DIR/pid" 2>/dev/null))." \
            "If no serverStarter.sh is running, remove $LOCK_DIR and try again."
    fi
    sleep "$NAP"
    waited=$((waited + NAP_TENTHS))
done

if [ -e "$PID_FILE" ]; then
    pid=$(cat "$PID_FILE" 2>/dev/null)
    if valid_pid "$pid" && running_ours "$pid"; then
        echo "Handler already running (PID $pid)."
        echo "Log:  $LOG_FILE"
        echo "Stop: $STOP_CMD"
        exit 0
    fi
    if ! valid_pid "$pid"; then
        why="it holds no PID"
    elif is_alive "$pid"; then
        why="PID $pid is another program, left alone"
    else
        why="PID $pid is not running"
    fi
    rm -f "$PID_FILE" || die "cannot remove the stale PID file $PID_FILE"
    echo "Removed a stale PID file ($why)."
fi

if [ -x "$PROJECT_DIR/.venv/bin/python" ]; then
    PYTHON="$PROJECT_DIR/.venv/bin/python"
elif [ -x "$PROJECT_DIR/venv/bin/python" ]; then
    PYTHON="$PROJECT_DIR/venv/bin/python"
else
    PYTHON=$(command -v python3) || die "no Python found: create .venv (see README) or install python3"
fi

[ "$#" -gt 0 ] || set -- --serve

# Only this run's part of the log decides readiness and is shown on failure.
printf '\n==== %s serverStarter.sh: %s %s %s\n' "$(date '+%Y-%m-%d %H:%M:%S')" "$PYTHON" "$HANDLER" "$*" \
    >>"$LOG_FILE" || die "cannot write $LOG_FILE"
log_start=$(($(wc -c <"$LOG_FILE") + 1))

# The handler runs from the project directory, as `python handler.py` would, in its own session (setsid)
# so closing the terminal does not hang it up; unbuffered so the log shows its lines as they happen.
cd "$PROJECT_DIR" || die "cannot enter $PROJECT_DIR"
if command -v setsid >/dev/null 2>&1; then
    PYTHONUNBUFFERED=1 setsid "$PYTHON" "$HANDLER" "$@" </dev/null >>"$LOG_FILE" 2>&1 &
else
    PYTHONUNBUFFERED=1 nohup "$PYTHON" "$HANDLER" "$@" </dev/null >>"$LOG_FILE" 2>&1 &
fi
pid=$!

if ! { printf '%s\n' "$pid" >"$PID_FILE.tmp.$$" && mv -f "$PID_FILE.tmp.$$" "$PID_FILE"; }; then
    rm -f "$PID_FILE.tmp.$$"
    kill "$pid" 2>/dev/null
    die "cannot write $PID_FILE; stopped the handler (PID $pid)"
fi

waited=0
while is_alive "$pid"; do
    if tail -c +"$log_start" "$LOG_FILE" | grep -Eiq -- "$READY_PATTERN"; then
        # One more look shortly after: a handler that printed the line on its way out is gone by then.
        sleep "$NAP"
        break
    fi
    [ "$waited" -ge "$start_wait_tenths" ] && break
    sleep "$NAP"
    waited=$((waited + NAP_TENTHS))
done

if ! is_alive "$pid"; then
    wait "$pid"
    status=$?
    remove_pid_file "$pid"
    {
        echo "The handler exited during startup (exit status $status). Last lines of $LOG_FILE:"
        tail -c +"$log_start" "$LOG_FILE" | tail -n 20 | sed 's/^/  | /'
    } >&2
    exit 1
fi

echo "Handler started (PID $pid)."
echo "Log:  $LOG_FILE"
echo "Stop: $STOP_CMD"
