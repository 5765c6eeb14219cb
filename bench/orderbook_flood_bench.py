#!/usr/bin/env python3
"""Benchmark of issue #20's order flood: does one seat's flood of limit bids stall a concurrent game?

    .venv/bin/python bench/orderbook_flood_bench.py                  # 10,000 bids
    .venv/bin/python bench/orderbook_flood_bench.py --orders 100     # a quick run
    .venv/bin/python bench/orderbook_flood_bench.py --smoke          # its smallest run: 50 bids, 0.5 s baseline
    .venv/bin/python bench/orderbook_flood_bench.py --reference-book # the pre-#20 scanning book, for comparison

The local server runs in its own process (this file with --serve), and game A's sockets in another (--flood-game),
so neither the server's nor the flood's CPU time is counted in the probe's process. Game A (futarchy) is played
by twelve sockets to its market (phase 6); game B (Harberger) has twelve joined sockets waiting in phase 0. One
socket of B probes the server: a `status` frame and its answer, a round trip
through the server's event loop, every few milliseconds. Printed:

- probe round trip, p50 / p99 / max, first with no flood (the baseline, same run, same server), then while seat 7
  of A sends `--orders` limit bids as fast as the server answers them (at most `--window` unanswered) and until
  the server has answered them all,
  then while it cancels them all (the book empties);
- the flood's length and throughput, how many bids rested, and whether game B's sockets all stayed connected;
- the server's resident memory (VmRSS) before the flood, after it, and after the book emptied.

Nothing asserts on timings: this prints what it measured.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from websockets.asyncio.client import ClientConnection, connect  # noqa: E402
from websockets.exceptions import ConnectionClosed  # noqa: E402

from bench.agents_bench import percentile  # noqa: E402

SESSIONS = REPO / "tests" / "fixtures" / "market_sessions.json"  # the real server's sessions 1 and 2
SEATS = 12
FLOOD_SEAT = 7  # a speculator: cash, no shares
LONG = 3600.0  # seconds: the phases a game waits in never end by their timer during the bench


def serve(reference_book: bool) -> None:
    """The child process: a local server with the two games; prints their ids and URL, then serves until killed."""
    from lib.localserver.server import LocalServer

    if reference_book:
        import lib.games.market.server as localserver_market
        from tests.helpers.reference_book import ReferenceMarket

        localserver_market.Market = ReferenceMarket  # type: ignore[misc]

    async def main() -> None:
        server = LocalServer(sessions=SESSIONS)
        await server.start()
        one_round = {"practice_round": False, "round_count": 1, "session_number": 1}
        market = server.create_game({"game_type": "futarchy", **one_round,
                                     **{f"timer_phase_{n}": LONG if n == 6 else 0.05 for n in range(1, 10)}})
        waiting = server.create_game({"game_type": "harberger", **one_round,
                                      **{f"timer_phase_{n}": LONG for n in range(1, 10)}})
        print(json.dumps({"ws": server.ws_url, "market": market, "waiting": waiting}), flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


class Seat:
    """One joined socket that reads everything the server sends (so the server's writes never back up), keeping
    only the frames a caller asks for."""

    def __init__(self, ws: ClientConnection, keep: Any = None) -> None:
        self.ws = ws
        self.keep = keep or (lambda _text: False)
        self.kept: list[dict[str, Any]] = []
        self.count = 0
        self.arrived = asyncio.Event()
        self.closed = False
        self.why = ""
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for text in self.ws:
                self.count += 1
                if self.keep(text):
                    self.kept.append(json.loads(text))
                self.arrived.set()
        except ConnectionClosed as exc:
            self.why = repr(exc)
        finally:
            self.closed = True
            self.arrived.set()

    async def send(self, frame: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(frame))

    async def until(self, check: Any, timeout: float) -> None:
        async def wait() -> None:
            while not check():
                if self.closed:
                    raise ConnectionError(f"the server closed the socket: {self.why}")
                self.arrived.clear()
                await self.arrived.wait()
        await asyncio.wait_for(wait(), timeout)


async def join(url: str, game_id: int, number: int, keep: Any = None) -> tuple[Seat, str]:
    ws = await connect(url, open_timeout=10, max_queue=None)
    recovery = f"flood-bench-{game_id}-{number}"
    seat = Seat(ws, keep)
    await seat.send({"gameId": game_id, "type": "join", "recovery": recovery})
    return seat, recovery


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return -1


async def probe(seat: Seat, game_id: int, recovery: str, stop: asyncio.Event, gap: float) -> list[float]:
    """Round trips of `status` frames (milliseconds) until `stop` is set."""
    times: list[float] = []
    while not stop.is_set():
        before = len(seat.kept)
        started = time.perf_counter()
        await seat.send({"gameId": game_id, "type": "status", "recovery": recovery})
        await seat.until(lambda b=before: len(seat.kept) > b, timeout=120)
        times.append((time.perf_counter() - started) * 1000)
        await asyncio.sleep(gap)
    return times


def summary(name: str, times: list[float]) -> str:
    return (f"  {name:<22} n={len(times):5d}  p50={percentile(times, 50):8.2f} ms  p99={percentile(times, 99):8.2f} ms"
            f"  max={max(times, default=float('nan')):8.2f} ms")


async def flood_game(url: str, market: int, orders: int, window: int, timeout: float) -> None:
    """The flooding game's twelve sockets, in a process of their own (reading a flood's 12 x N frames must not
    delay the probe's answers in the measuring process). Told by stdin lines when to flood and when to cancel;
    answers on stdout when the server has answered every frame."""
    answered = lambda text: '"add-order"' in text or '"order-refused"' in text or '"delete-order"' in text  # noqa: E731
    seats = [(await join(url, market, n, None))[0] for n in range(1, SEATS + 1)]
    flooder = seats[FLOOD_SEAT - 1]
    flooder.keep = lambda text: '"phase-transition"' in text
    for seat in seats:
        await seat.send({"gameId": market, "type": "player-is-ready"})
    await flooder.until(lambda: any(f["data"].get("phase") == 6 for f in flooder.kept), timeout=60)
    flooder.kept.clear()
    flooder.keep = answered
    loop = asyncio.get_running_loop()

    async def command() -> str:
        return (await loop.run_in_executor(None, sys.stdin.readline)).strip()

    print("market", flush=True)
    assert await command() == "flood"
    for i in range(orders):
        if i - len(flooder.kept) >= window:  # the server's keepalive pong must not queue behind the whole flood
            await flooder.until(lambda i=i: i - len(flooder.kept) < window, timeout=timeout)
        await flooder.send({"gameId": market, "type": "post-order", "order": {
            "type": "bid", "price": 1 + (i * 7) % 5, "quantity": 1, "condition": 0, "now": False}})
    await flooder.until(lambda: len(flooder.kept) >= orders, timeout=timeout)
    ids = [f["data"]["order"]["id"] for f in flooder.kept if f.get("eventType") == "add-order"]
    print(f"flooded {len(ids)}", flush=True)
    assert await command() == "cancel"
    flooder.kept.clear()
    for n, order_id in enumerate(ids):
        if n - len(flooder.kept) >= window:
            await flooder.until(lambda n=n: n - len(flooder.kept) < window, timeout=timeout)
        await flooder.send({"gameId": market, "type": "cancel-order", "order": {"id": order_id, "condition": 0}})
    await flooder.until(lambda: len(flooder.kept) >= len(ids), timeout=timeout)
    print("cancelled", flush=True)
    for seat in seats:
        await seat.ws.close()


async def bench(args: argparse.Namespace) -> None:
    env = {**os.environ, "PYTHON_DOTENV_DISABLED": "1", "PYTHONPATH": str(REPO)}
    command = [sys.executable, __file__, "--serve"] + (["--reference-book"] if args.reference_book else [])
    server = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, text=True)
    flooding: subprocess.Popen[str] | None = None
    try:
        assert server.stdout is not None
        info = json.loads(server.stdout.readline())
        url, market, waiting = info["ws"], info["market"], info["waiting"]
        waiting_seats = [await join(url, waiting, n) for n in range(1, SEATS + 1)]
        prober, prober_code = waiting_seats[0]
        prober.keep = lambda text: '"status"' in text
        flooding = subprocess.Popen(
            [sys.executable, __file__, "--flood-game", url, str(market), "--orders", str(args.orders),
             "--window", str(args.window), "--timeout", str(args.timeout)],
            cwd=REPO, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert flooding.stdin is not None and flooding.stdout is not None
        loop = asyncio.get_running_loop()

        async def tell(line: str | None, expect: str) -> str:
            assert flooding is not None and flooding.stdin is not None and flooding.stdout is not None
            if line is not None:
                flooding.stdin.write(line + "\n")
                flooding.stdin.flush()
            answer = await loop.run_in_executor(None, flooding.stdout.readline)
            if not answer.startswith(expect):
                raise SystemExit(f"bench: the flooding game's process answered {answer!r}, not {expect!r}")
            return answer

        await tell(None, "market")

        async def measure(work: Any) -> tuple[list[float], float, Any]:
            stop = asyncio.Event()
            task = asyncio.create_task(probe(prober, waiting, prober_code, stop, args.gap))
            started = time.perf_counter()
            result = await work
            seconds = time.perf_counter() - started
            stop.set()
            return await task, seconds, result

        baseline, _, _ = await measure(asyncio.sleep(args.baseline_seconds))
        rss_before = rss_kib(server.pid)
        flooded, flood_seconds, answer = await measure(tell("flood", "flooded"))
        rested = int(answer.split()[1])
        rss_flooded = rss_kib(server.pid)
        cancelled, cancel_seconds, _ = await measure(tell("cancel", "cancelled"))
        rss_emptied = rss_kib(server.pid)
        await asyncio.sleep(1)
        connected = sum(1 for seat, _ in waiting_seats if not seat.closed)
        book = "reference (pre-#20 scanning) book" if args.reference_book else "indexed book"
        print(f"order flood: {args.orders} limit bids from one seat, {book}; probe = `status` round trip of a "
              "concurrent game's seat")
        print(summary("baseline (no flood)", baseline))
        print(summary("during the flood", flooded))
        print(summary("during the cancels", cancelled))
        print(f"  flood: {flood_seconds:.2f} s ({args.orders / flood_seconds:.0f} orders/s), {rested} rested; "
              f"cancels: {cancel_seconds:.2f} s")
        print(f"  concurrent game: {connected}/{SEATS} sockets still connected")
        print(f"  server RSS: {rss_before / 1024:.1f} MiB before, {rss_flooded / 1024:.1f} MiB after the flood, "
              f"{rss_emptied / 1024:.1f} MiB after the book emptied")
        for seat, _ in waiting_seats:
            await seat.ws.close()
    finally:
        for child in (flooding, server):
            if child is not None:
                child.kill()
                child.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=10_000, help="limit bids in the flood (default 10000)")
    parser.add_argument("--window", type=int, default=500,
                        help="most orders in flight unanswered (default 500): a client's keepalive pong queues behind "
                             "what it sent, and the server drops a socket whose pong is late")
    parser.add_argument("--baseline-seconds", type=float, default=2.0, help="probe time with no flood")
    parser.add_argument("--gap", type=float, default=0.005, help="seconds between probes (default 0.005)")
    parser.add_argument("--timeout", type=float, default=600.0, help="give up waiting for the server's answers")
    parser.add_argument("--reference-book", action="store_true",
                        help="run the server with the pre-#20 scanning book (tests/games/market/test_book_index.py)")
    parser.add_argument("--smoke", action="store_true",
                        help="the smallest run (50 bids, 0.5 s of baseline probes), to check the bench still works")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--flood-game", nargs=2, metavar=("URL", "GAME"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.smoke:
        args.orders, args.baseline_seconds = min(args.orders, 50), min(args.baseline_seconds, 0.5)
    if args.orders < 1 or args.window < 1:
        parser.error("--orders and --window must be at least 1")
    if args.serve:
        serve(args.reference_book)
        return
    if args.flood_game:
        asyncio.run(flood_game(args.flood_game[0], int(args.flood_game[1]), args.orders, args.window, args.timeout))
        return
    asyncio.run(bench(args))


if __name__ == "__main__":
    main()
