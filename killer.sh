#!/bin/sh
# Stop the agent manager started by serverStarter.sh: SIGTERM, a bounded wait so the agents can leave their
# games and flush their transcripts, then SIGKILL; the PID file is removed. Exits 0 when nothing runs.
#
#   sh killer.sh
#
# Settings (environment):
#   HANDLER_STOP_TIMEOUT  seconds to wait after SIGTERM before SIGKILL (default 30)
#
# Only "our" process is ever signalled: one whose command line has this project's handler.py (absolute
# path) as an argument (lib/handlerctl.sh, shared with serverStarter.sh). A PID file naming any other
# process, e.g. a reused PID, is stale and is removed.

die() {
    echo "killer.sh: $*" >&2
    exit 1
}

# The project is where this script really lives (following symlinks to it), never $PWD or $HOME. Found here,
# not in lib/handlerctl.sh with the rest of what serverStarter.sh shares: that file is found through it.
script=$0
while [ -L "$script" ] && target=$(readlink "$script"); do
    case $target in /*) script=$target ;; *) script=$(dirname -- "$script")/$target ;; esac # relative to the link
done
PROJECT_DIR=$(CDPATH='' cd -- "$(dirname -- "$script")" && pwd -P) || die "cannot find the project directory from $0"
# shellcheck source=SCRIPTDIR/lib/handlerctl.sh disable=SC1091 # followed with -x; also linted on its own
. "$PROJECT_DIR/lib/handlerctl.sh"

STOP_TIMEOUT=${HANDLER_STOP_TIMEOUT:-30}
# After SIGKILL the kernel needs a moment to tear the process down.
KILL_WAIT_TENTHS=50

if [ "$#" -gt 0 ]; then
    echo "usage: sh killer.sh   (stops the handler started by serverStarter.sh)" >&2
    exit 2
fi

stop_timeout_tenths=$(tenths HANDLER_STOP_TIMEOUT "$STOP_TIMEOUT") || exit 1

# Wait up to $2 tenths of a second for process $1 to end (or stop being ours); true when it has.
wait_gone() {
    waited=0
    while running_ours "$1"; do
        [ "$waited" -ge "$2" ] && return 1
        sleep "$NAP"
        waited=$((waited + NAP_TENTHS))
    done
}

# Remove the PID file only while it still names this PID: a new start may have replaced it meanwhile.
remove_pid_file() {
    [ "$(cat "$PID_FILE" 2>/dev/null)" = "$1" ] || return 0
    rm -f "$PID_FILE" || die "cannot remove $PID_FILE"
}

if [ ! -e "$PID_FILE" ]; then
    echo "Handler is not running (no $PID_FILE)."
    exit 0
fi

pid=$(cat "$PID_FILE" 2>/dev/null)
if ! valid_pid "$pid"; then
    rm -f "$PID_FILE" || die "cannot remove $PID_FILE"
    echo "Handler is not running; removed a PID file that held no PID."
    exit 0
fi

if ! is_alive "$pid"; then
    remove_pid_file "$pid"
    echo "Handler is not running (PID $pid is gone); removed the stale PID file."
    exit 0
fi
if ! is_ours "$pid"; then
    remove_pid_file "$pid"
    echo "PID $pid is another program, not this project's handler: left it alone, removed the stale PID file."
    exit 0
fi

echo "Stopping the handler (PID $pid): SIGTERM, waiting up to ${STOP_TIMEOUT}s for it to leave its games..."
# A failed kill with the handler still there means no permission; one that just exited is fine.
if ! kill -TERM "$pid" 2>/dev/null && running_ours "$pid"; then
    die "cannot signal PID $pid (started by another user?); run killer.sh as that user"
fi
if wait_gone "$pid" "$stop_timeout_tenths"; then
    remove_pid_file "$pid"
    echo "Handler stopped."
    exit 0
fi

# Checked again right before the signal: the PID could have been reused since.
if running_ours "$pid"; then
    echo "The handler did not stop within ${STOP_TIMEOUT}s: sending SIGKILL (its transcripts may be incomplete)."
    kill -KILL "$pid" 2>/dev/null
fi
wait_gone "$pid" "$KILL_WAIT_TENTHS" || die "PID $pid survived SIGKILL; $PID_FILE left in place"
remove_pid_file "$pid"
echo "Handler killed."
