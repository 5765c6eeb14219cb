"""Stand-in for handler.py in the tests of serverStarter.sh and killer.sh.

The tests copy it into a temporary project as `handler.py`. It keeps the real handler's command-line contract:
`--serve` binds AGENT_MANAGER_HOST:AGENT_MANAGER_PORT, prints a ready line, and on SIGTERM or SIGINT takes a
moment (as the real one does to leave its games and flush transcripts) and exits 0. A port in use or a missing
setting gives a one-line error and a non-zero exit at startup.

Unlike the real handler, AGENT_MANAGER_PORT has no default, so a test can never bind the real port 10341.
Test knobs (environment):
  FAKE_HANDLER_IGNORE_TERM=1    ignore SIGTERM (to exercise killer.sh's SIGKILL)
  FAKE_HANDLER_STOP_DELAY=SECS  time taken to shut down cleanly (default 0.3)
"""

import os
import signal
import socket
import sys
import time


def main() -> int:
    print(f"fake handler args: {sys.argv[1:]}", flush=True)
    if "--serve" not in sys.argv[1:]:
        print("fake handler: nothing to do without --serve", flush=True)
        return 0

    host = os.environ.get("AGENT_MANAGER_HOST", "127.0.0.1")
    port = os.environ.get("AGENT_MANAGER_PORT")
    if not port:
        print("error: missing setting AGENT_MANAGER_PORT (set it in .env)", file=sys.stderr)
        return 2

    server = socket.socket()
    try:
        server.bind((host, int(port)))
    except OSError as exc:
        print(f"error: cannot listen on {host}:{port}: {exc.strerror}", file=sys.stderr)
        return 1
    server.listen()

    stopping = []
    if os.environ.get("FAKE_HANDLER_IGNORE_TERM") == "1":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    else:
        signal.signal(signal.SIGTERM, lambda signum, frame: stopping.append(signum))
    signal.signal(signal.SIGINT, lambda signum, frame: stopping.append(signum))

    print(f"agent manager listening on {host}:{port}", flush=True)
    server.settimeout(0.05)
    while not stopping:
        try:
            conn, _ = server.accept()
            conn.close()
        except TimeoutError:
            pass

    print(f"got signal {stopping[0]}: leaving games, flushing transcripts", flush=True)
    time.sleep(float(os.environ.get("FAKE_HANDLER_STOP_DELAY", "0.3")))
    server.close()
    print("stopped cleanly", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
