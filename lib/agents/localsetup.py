"""A single --local game set up as a study's arm is (issue #23 item 1): its parameters from a file (`--params`), its
private values (`--values fresh` or `--values session N`) and a policy per seat or seat group (`--seat-policy`).

- `--params FILE`: flat parameter names as in a log (`{"round_count": 3, "timer_phase_3": 60}`) or a recorded log's
  parameter list, over the game's defaults; --rounds, --practice/--no-practice and --timer-scale, when given, go on
  top (the scale multiplies the file's timers).
- `--values fresh`: values drawn for this game as a study draws game 0's from seed --seed (lib.study.values), so a
  study's game 0 with the same seed and parameters plays the same values; `--values session N`: session N of the
  --sessions table (else the server's). Without it the game plays session 1, as before.
- `--seat-policy WHO=POLICY` (repeatable): WHO is a seat group of the game (developer, owners, speculators) or a
  seat number; POLICY is baseline, fitted, empirical or llm. A seat number overrides its group; the other seats
  play --policy.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from lib.agents.run import UsageError
from lib.games.protocols import Game, Policy
from lib.ibex.params import GameParams

SEAT_POLICIES = ("baseline", "fitted", "empirical", "llm")


def parse_values(words: Sequence[str] | None) -> tuple[str, int | None] | None:
    """--values's words as ("fresh", None) or ("session", N); UsageError otherwise."""
    if not words:
        return None
    if list(words) == ["fresh"]:
        return "fresh", None
    if len(words) == 2 and words[0] == "session" and words[1].isdigit() and int(words[1]) >= 1:
        return "session", int(words[1])
    raise UsageError(f"--values {' '.join(words)}: use --values fresh or --values session N (N a session number)")


def parse_seat_policies(items: Sequence[str]) -> list[tuple[str, str]]:
    """--seat-policy's WHO=POLICY items, in order; UsageError for one that is not of that form."""
    out = []
    for item in items:
        who, sep, name = item.partition("=")
        if not sep or not who or name not in SEAT_POLICIES:
            raise UsageError(f"--seat-policy {item!r}: use WHO=POLICY, WHO a seat group or seat number, POLICY one "
                             f"of {', '.join(SEAT_POLICIES)}")
        out.append((who.strip(), name))
    return out


def read_params_file(path: Path, game: Game) -> dict[str, Any]:
    """The flat parameters of a --params file over the game's defaults; UsageError (one line) otherwise."""
    from lib.agents.realserver import PlayError, create_payload

    try:
        source = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: cannot read the game parameters: {getattr(exc, 'strerror', None) or exc}") \
            from None
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    try:
        _payload, params = create_payload(source, str(path), "local game", game.name)
    except PlayError as exc:
        raise UsageError(str(exc)) from None
    return {k: v for k, v in params.values.items() if k != "title"}


def local_overrides(game: Game, params_file: Path | None, rounds: int | None, practice: bool | None,
                    timer_scale: float) -> dict[str, Any]:
    """The flat parameters of the local game: without a file, --local's as before (the game's local parameters);
    with one, the file's, the flags given on top."""
    if params_file is None:
        return game.rules.local_parameters(rounds or 1, True if practice is None else practice, timer_scale)
    flat = read_params_file(params_file, game)
    if rounds is not None:
        flat["round_count"] = rounds
    if practice is not None:
        flat["practice_round"] = practice
    if timer_scale != 1.0:
        for key, value in list(flat.items()):
            if key.startswith("timer_phase_") and isinstance(value, int | float) and value:
                flat[key] = round(float(value) * timer_scale, 3)
    return flat


def local_values(choice: tuple[str, int | None] | None, game: Game, flat: Mapping[str, Any],
                 seed: int) -> dict[str, Any]:
    """create_game's keywords for the values: {} (session 1 of the server's table), a fresh table, or a session."""
    if choice is None:
        return {}
    kind, number = choice
    if kind == "session":
        return {"session_number": number}
    from lib.study.values import fresh_table

    params = game.rules.parameters(flat)
    return {"sessions": fresh_table(game.name, dict(params.values), seed, 0), "session_number": 1}


def seat_policies(choices: Sequence[tuple[str, str]], game: Game, params: GameParams, default: Policy,
                  make: Callable[[str], Policy]) -> dict[int, Policy]:
    """Seat -> policy for every seat the agents play: `default` (the game's version of --policy), then each group's
    choice, then each seat number's; `make(name)` builds the game's version of a policy by name. UsageError for a
    group the game does not have or a seat it does not seat."""
    seats = list(range(1, game.play.seats + 1))
    groups = game.rules.seat_groups(params)
    out: dict[int, Policy] = dict.fromkeys(seats, default)
    made: dict[str, Policy] = {}
    ordered = sorted(choices, key=lambda c: c[0].isdigit())  # groups first: a seat number overrides its group
    for who, name in ordered:
        if who.isdigit():
            targets = [int(who)]
            if targets[0] not in seats:
                raise UsageError(f"--seat-policy {who}={name}: a {game.name} game's agents play seats 1-{len(seats)}")
        elif who in groups:
            targets = list(groups[who])
        else:
            raise UsageError(f"--seat-policy {who}={name}: {who!r} is not a seat group of a {game.name} game "
                             f"({', '.join(groups)}, or a seat number)")
        if name not in made:
            made[name] = make(name)
        for seat in targets:
            out[seat] = made[name]
    return out
