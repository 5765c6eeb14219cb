"""Fresh private values for a study's games, in the form the real IBEX server takes them.

The real server (IBEX-TUDelft/IBEX-game_server master 9273565, api/logics/Logic.js) does not draw a round's values
while a game runs: at each round's start it sets every landholder's v[0] and v[1] to `resources/sessions.json`'s
`values[c].developer` / `owner[k]` for the game's `session_number` and that round, times 1000, and (market games)
every player's signals from the same round's `signals[c]`, unless `generate_signals` makes it draw them then. So a
fresh game here is a fresh *session* in that table's format (lib.ibex.sessions), which the local server plays exactly as
the real one plays a table entry. Differences from the real server, all documented in docs/studies.md:

- the real table was drawn offline (the spreadsheets in api/resources); ours draws each value uniformly from the
  whole thousands in [low/1000, high/1000] of the role and condition (lib.ibex.sessions.generate_sessions);
- the real assign-role first draws v = low + round((high-low)/5000 * U) * 5000 (or the `fixed` value) and then
  overwrites v[0] and v[1] from the table; only project B's v[2], which no game uses, keeps that draw;
- the table's signals (used when `generate_signals` is false) are drawn as the server draws generated ones: 1 % of
  the round's sum of values under c, times the final tax rate, times U(signal_low, signal_high) per player
  (lib.ibex.sessions.add_signals);
- a real server reads only its own table, so fresh values cannot be sent to it: a study on the real server uses
  the sessions its table holds (values.source = "sessions").

Game k's values depend on the study's seed and k only, never on the arm or the order games are played in.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

from lib.games import game_for
from lib.ibex.params import ROLE_SPECULATOR, GameParams
from lib.ibex.sessions import add_signals, generate_sessions


def _seed(seed: int, index: int, what: str) -> int:
    return int.from_bytes(hashlib.sha256(f"ibex-study-values:{what}:{seed}:{index}".encode()).digest()[:8], "big")


def fresh_session(game: str, parameters: Mapping[str, Any], seed: int, index: int,
                  session_id: int = 1) -> dict[str, Any]:
    """Session `session_id` of a sessions table: values (and, for market games, signals) for every round the
    parameters play, round 0 (the practice round's slot) included, drawn from the study's `seed` and game `index`."""
    params = GameParams(dict(parameters))
    rounds = params.round_count + 1  # the table is indexed by round number, the practice round being round 0
    table = generate_sessions(params, 1, rounds, _seed(seed, index, "values"))
    # A game with speculators (the IBEX role that trades on signals of the value: the market games) needs signals.
    if ROLE_SPECULATOR in game_for(game).rules.seat_roles(params).values():
        table = add_signals(table, _seed(seed, index, "signals"),
                            speculators=int(parameters.get("speculators_count", 6)),
                            tax_rate_final=int(parameters.get("tax_rate_final", 33)),
                            low=float(parameters.get("signal_low", 0.95)),
                            high=float(parameters.get("signal_high", 1.05)))
    session = table[0]
    session["id"] = session_id
    return session


def session_number_of(index: int) -> int:
    """The session number game `index` is played as, in a table made by fresh_sessions_table (ids start at 1)."""
    return index + 1


def fresh_sessions_table(game: str, parameters: Mapping[str, Any], seed: int,
                         indices: Iterable[int]) -> list[dict[str, Any]]:
    """One sessions table for a whole study on one local server: game k's fresh session as session k + 1, so each
    game is created with `session_number` = session_number_of(k) (lib.ibex.sessions.parse_sessions reads it)."""
    return [fresh_session(game, parameters, seed, k, session_id=session_number_of(k)) for k in indices]


def fresh_table(game: str, parameters: Mapping[str, Any], seed: int, index: int) -> list[dict[str, Any]]:
    """A whole sessions table holding game `index`'s fresh session as session 1 (the `session_number` to play)."""
    return [fresh_session(game, parameters, seed, index, session_id=1)]
