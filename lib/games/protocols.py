"""What generic code may ask of a game: small Protocols, one per seam, and the record that gathers them.

A game (lib/games/<name>/game.py) is a `GameDefinition` whose parts each implement one Protocol here:

- `rules` (GameRules): its parameters (the web UI's defaults, typed and checked), seats and seat groups (named by
  the game), phases.
- `server` (ServerRules): what the local IBEX server (lib/localserver) needs to play it.
- `seat` (SeatRules): what one agent playing one seat must know of the game (lib.agents.agent asks it): the view,
  which decisions are due, the server's action-required, the last check before sending, the fallback, the resync
  from a status snapshot, acknowledgements, what the decisions table records.
- `answers` (AnswerRules): what a model is asked and how its answer is read (lib.agents.llm.LLMPolicy).
- `prompts` (PromptRules, optional): the game's prompt variants, other prompts than the training set's for the same
  decisions (a model that was not fine-tuned on the game needs its rules spelt out); see `variant_messages`.
- `play` (PlayRules): what the run modes (lib.agents.modes) need to play it with agents: its version of the chosen
  policy, the agents' options, the round report, what the real server says of it.
- `data` (DataRules): what the dataset builder (lib.dataset.build) and the state sidecar (lib.dataset.sidecar) need:
  the game's logs checked, its training examples, each example's sidecar line read back.
- `scores` (ScoreRules): how `finetune.py --evaluate` scores its decisions: action kinds, rule policies, strict
  parsing of a model's answer, its section of the report, table, per-decision CSV and picture.

Generic modules type against these Protocols and reach a game only through lib.games.game_for; nothing outside
lib/games branches on a game's name.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from pathlib import Path

    from lib.agents.decisions import Decision
    from lib.agents.transcript import Transcript
    from lib.dataset.examples import GameResult, Sink
    from lib.dataset.sidecar import Example
    from lib.ibex.params import GameParams
    from lib.ibex.sessions import SessionsTable
    from lib.localserver.core import CoreGame


class ActionError(ValueError):
    """An answer that must not be sent; the message says why, in words a model can act on."""


class NoLongerValid(ActionError):
    """An answer that was valid when decided but is not any more (the game moved while the policy thought): it
    is dropped, not refused as a policy's bug."""


class Policy(Protocol):
    """What an agent asks for an action. `deadline` is a time.monotonic() instant; None means "no valid answer"."""

    name: str

    async def decide(self, view: Any, wire_type: str, *, cap: int, action_required: dict[str, Any],
                     deadline: float, transcript: Transcript | None) -> dict[str, Any] | None: ...


class GameRules(Protocol):
    """A game's facts and parameters, as the real IBEX server has them."""

    last_phase: int  # the last phase with a timer; phase 0 waits for players

    def default_parameters(self) -> dict[str, Any]:
        """The real server's web UI defaults for this game, flat, named as a game log names them."""
        ...

    def parameters(self, flat: Mapping[str, Any] | None = None, where: str = "gameParameters") -> GameParams:
        """The defaults with `flat` applied, typed and checked; ParamError (one line naming the key) otherwise."""
        ...

    def local_parameters(self, rounds: int, practice: bool, timer_scale: float) -> dict[str, Any]:
        """Flat overrides for a game on the local server: round count, practice round, timers scaled."""
        ...

    def seat_roles(self, params: GameParams | None = None) -> dict[int, int]:
        """Seat number -> role (lib.games.voting.rules.ROLE_*), in join order, for a game with `params`."""
        ...

    def seat_groups(self, params: GameParams | None = None) -> dict[str, tuple[int, ...]]:
        """Seat-group name -> its seats, the names being the game's own (the IBEX games: developer, owners,
        speculators; the ultimatum test game: proposer, responder); only the groups with a seat. A study's arms
        and `handler.py --seat-policy` name seats by these groups, and refuse a name not among them."""
        ...

    def timeout(self, params: GameParams) -> float:
        """Seconds after which a game with `params` that has not ended is given up (a bound, not an estimate)."""
        ...


class ServerRules(Protocol):
    """What the local IBEX server (lib/localserver) needs of a game to play it as the real server would."""

    def parameters(self, flat: Mapping[str, Any] | None = None) -> GameParams:
        """An in-process game's parameters: the local server's defaults for this game with `flat` applied, typed and
        checked; ParamError (one line naming the key) otherwise."""
        ...

    def refusal(self, values: Mapping[str, Any], strict: bool) -> str | None:
        """Why the local server cannot play a create-for-llm game whose stored rows typed to `values` (the real
        server would start it), with the --strict refusals when `strict`; None when it can."""
        ...

    def new_game(self, game_id: int, params: GameParams, sessions: SessionsTable, **options: Any) -> CoreGame:
        """The running game (a lib.localserver.core.CoreGame, which also answers /games/status); ValueError naming
        the parameter or the sessions table when the table lacks what `params` need. `options` are CoreGame's."""
        ...

    def idle_phases(self, params: GameParams) -> frozenset[int]:
        """The phases that only their timer ends and in which no seat can act (no message is taken): the local
        server's fast mode ends them at once."""
        ...


@dataclass(frozen=True)
class Cadence:
    """How a decision that is due all phase long (the market's trading) is repeated."""

    interval: float  # seconds between the starts of two decisions
    seconds: float  # the most one decision may take (never past the phase's end minus the safety margin)
    min_seconds: float  # no decision starts with less than this left before the phase's end minus the margin
    too_late: str  # the transcript's note when one is not started for that reason


@dataclass(frozen=True)
class Obey:
    """What a seat makes of an action-required the server sent (`wire_type` None: not an action of this game)."""

    wire_type: str | None
    refusal: str | None = None  # why it is not decided now (None: decide it)
    next_phase: bool = False  # it belongs to the next phase: obey it when that phase begins
    note: str = "server action-required ignored"  # the transcript's event for one that is not obeyed


@dataclass(frozen=True)
class Resynced:
    """What a status snapshot told the view: what the seat already did in this phase, and the transcript's record."""

    acted: set[str]
    record: dict[str, Any] = field(default_factory=dict)


class SeatRules(Protocol):
    """What one agent in one seat asks its game; the connection, the deadlines and the decision record are the
    agent's (lib.agents.agent). One object per seat: `configured` makes it from the game's part and the agent's
    game-specific options."""

    def configured(self, **options: Any) -> SeatRules:
        """The rules for one seat with these options (TypeError naming an option this game does not take)."""
        ...

    def new_view(self, game_id: int, params: GameParams | None) -> Any:
        """An empty view of the game for this seat (the frames and sent messages are folded in by its
        `apply(frame)` and `apply_sent(message)`)."""
        ...

    def snapshot(self, view: Any) -> Any:
        """A copy of the view that later frames cannot change, for a decision that outlives the frame."""
        ...

    def due(self, view: Any, *, chat: bool) -> str | None:
        """The decision the seat owes now (its wire type), or None."""
        ...

    def cadence(self, wire_type: str) -> Cadence | None:
        """None: `wire_type` is decided once per phase; else it is decided again and again, at this cadence."""
        ...

    def version(self, view: Any) -> int:
        """Changes whenever a repeated decision may be worth taking again (the books or the wallet moved)."""
        ...

    def phase_closing(self, view: Any) -> bool:
        """The current phase has ended though its phase-transition has not come yet: nothing may go out."""
        ...

    def server_action(self, view: Any, data: dict[str, Any]) -> Obey:
        """What to do with an action-required the server sent (its data)."""
        ...

    def acknowledged(self, frame: dict[str, Any]) -> str | None:
        """The wire type of our own action that `frame` says the server has, or None."""
        ...

    def race(self, view: Any, message: str) -> str | None:
        """Whether an error frame the server sent this seat (its message; asked before the view folds the frame)
        answers a race no client can avoid: the game moved between the seat's send and the server's reading of it
        (the market's cancel that crosses its order's fill: "Order not found. N" for an order whose cancel the seat
        sent and the server had not answered yet). A few words naming the race, which the run counts apart from
        refusals; None: a refusal (the seat sent what the server does not take: under the local server's
        --strict, a bug that fails the run)."""
        ...

    def cap(self, view: Any, params: GameParams | None) -> int | None:
        """The largest amount an answer may name (None: the game has no amounts to cap nor server action-required;
        its decide records name neither)."""
        ...

    def action_required(self, view: Any, wire_type: str, *, cap: int | None,
                        timer_seconds: float | None) -> dict[str, Any]:
        """The action-required message a policy is shown for a decision the seat takes by itself."""
        ...

    def check_answer(self, answer: dict[str, Any], view: Any, wire_type: str, cap: int | None) -> dict[str, Any]:
        """A policy's answer as it may be sent, checked against the decision's view; ActionError otherwise."""
        ...

    def validate(self, message: dict[str, Any], view: Any, snapshot: Any, wire_type: str,
                 cap: int | None) -> dict[str, Any] | None:
        """The last check before sending, against the live `view` or the decision's `snapshot`: the message to
        send, None when the answer sends nothing (a wait), ActionError for one that must never go out,
        NoLongerValid for one the game has overtaken."""
        ...

    def fallback(self, view: Any, snapshot: Any, wire_type: str, cap: int | None,
                 repeats: int) -> tuple[dict[str, Any] | None, str | None]:
        """What goes out when the policy has no valid answer in time: (the message, None), or (None, why nothing
        goes out by design); ActionError or ValueError when no fallback is possible. `repeats`: repeated
        decisions started so far."""
        ...

    def baseline_policy(self, seed: int = 0) -> Policy:
        """The game's rule-based policy, as an agent's policy."""
        ...

    def seat_lookup(self, view: Any) -> bool:
        """The frames do not say which seat this is: read it from GET /games/status once joined (the agent's
        decisions wait for that answer)."""
        ...

    def learn_seat(self, view: Any, game_data: dict[str, Any]) -> bool:
        """Take the seat from a status snapshot (True: learnt)."""
        ...

    def resync(self, view: Any, game_data: dict[str, Any]) -> Resynced:
        """Fold a status snapshot (GET /games/status's game_data) into the view after a rejoin."""
        ...

    def resend(self, view: Any, wire_type: str, *, acted: set[str], acknowledged: bool, delivered: bool,
               snapshot: bool) -> tuple[bool, dict[str, Any] | None]:
        """After a rejoin, an answer chosen in this phase: (send it again?, the transcript's meta record saying
        why, or None). `acted`: what the snapshot says the seat did; `delivered`: it went out on the old socket;
        `snapshot`: a status snapshot was applied."""
        ...

    def decision_fields(self, view: Any, wire_type: str, action: dict[str, Any] | None) -> dict[str, Any]:
        """The decisions table's game-specific columns of a decision: role, action_type, private_values."""
        ...


class AnswerRules(Protocol):
    """What a chat model is asked for a decision and how its answer is read (lib.agents.llm.LLMPolicy)."""

    def messages(self, view: Any, action_required: dict[str, Any]) -> list[dict[str, str]]:
        """The chat messages for a decision, exactly as the training set holds them."""
        ...

    def schema(self, view: Any, wire_type: str, cap: int) -> dict[str, Any]:
        """The json_schema response format of the answer."""
        ...

    def parse(self, answer: Any, view: Any, wire_type: str, cap: int) -> dict[str, Any]:
        """The answer text as a wire message, checked strictly; ActionError (fed back to the model) otherwise."""
        ...


class PolicyRefused(ValueError):
    """A policy a game has no version of, or whose saved parameters cannot be read: one line for the user."""


DEFAULT_PROMPT = "default"  # the prompt the dataset builder writes: the only one a fine-tuned model was trained on


class PromptRules(Protocol):
    """A game's prompt variants. A variant rewrites the default messages of a decision (AnswerRules.messages: the
    training set's prompt) with what the decision's view holds, so that the same variant can be asked at play time
    (from the live view) and in `finetune.py --evaluate` (from an example's messages and the view its sidecar line
    rebuilds) and gives the same prompt in both. The default is never rewritten."""

    variants: Mapping[str, str]  # name -> what it changes and what it is for, one sentence; DEFAULT_PROMPT included

    def rewrite(self, variant: str, view: Any, messages: list[dict[str, str]]) -> list[dict[str, str]]:
        """The messages of prompt `variant` (one of `variants` but the default) for a decision whose default messages
        are `messages`; a new list, `messages` unchanged."""
        ...


class UnknownPromptVariant(PolicyRefused):
    """A prompt variant the game does not have; the message names it and the game's variants."""


class PlayRules(Protocol):
    """What the run modes (lib.agents.modes: a local game, a real server's game, the agent manager) ask of a game
    to play it with agents and to print its rounds as they end."""

    seats: int  # the seats the agents play, one agent each
    chat: bool  # whether the game has chat phases (--chat)
    action_phases: tuple[int, ...]  # the phases with actions: the default safety margin is a quarter of the shortest
    ruleset: str | None  # GET /games/status's `ruleset` on the real server for this game (None: it names none)
    seats_description: str  # for people: the seats the agents play, by role
    seat_counts: Mapping[str, int]  # the parameters that set how many seats each role has, as the agents play them

    def timer_scale(self, policy_name: str) -> float:
        """The default factor on the real server's timers of a local game played by this policy."""
        ...

    def policy_refusal(self, policy_name: str) -> str | None:
        """Why `--policy policy_name` cannot play this game (one line), or None when it can."""
        ...

    def rule_policy(self, name: str, *, seed: int, path: Path | None, data_dir: Path) -> tuple[Policy, str | None]:
        """The rule-based policy `name` (baseline, fitted, empirical; `path`: its saved parameters, else the
        newest under `data_dir`) and the run's first line saying which (None: the caller's); PolicyRefused."""
        ...

    def policy(self, chosen: Policy, seed: int) -> Policy:
        """This game's version of the policy the run chose (the same model, the game's own rules); PolicyRefused."""
        ...

    def agent_options(self, params: GameParams | None, *, seed: int, local: bool, known: bool = True) -> dict[str, Any]:
        """The agents' game options (lib.agents.agent.Agent's keywords) for a game with `params` (None: unknown),
        on the local server or a real one; `known` False: the server did not say which of its games this is."""
        ...

    def deciding_line(self, round_number: int, phase: int) -> str | None:
        """The progress line when a model starts deciding in a new phase (None: nothing is printed)."""
        ...

    def finished_rounds(self, views: list[Any], params: GameParams | None) -> list[int]:
        """The rounds that every seat's view has finished, in order (all of them once the game is over)."""
        ...

    def unfinished_round(self, views: list[Any]) -> int | None:
        """After a stop: the round under way worth reporting as far as it went, or None."""
        ...

    def round_lines(self, views: list[Any], number: int, fallbacks: list[Decision],
                    unfinished: bool = False) -> list[str]:
        """The report of round `number` from every seat's view, the `fallbacks` of that round marked; the first
        line names the round."""
        ...

    def compact_line(self, lines: list[str]) -> str:
        """One line of a round report (round_lines) for many games at once (--serve)."""
        ...


class DataRules(Protocol):
    """What the dataset builder and the state sidecar need of a game; the logs' envelope, the workers, the spools,
    the split, the report and the sidecar's file format are theirs."""

    kinds: Mapping[str, str]  # an example's kind (its sidecar line's "action") -> the decision's wire type

    def read_log(self, data: dict[str, Any], params: GameParams, source: str, played_by_agents: str | None) -> Any:
        """The rest of a decoded log of this game checked (lib.ibex.log has read the envelope and `params`): the log
        its examples are made from, with `source`, `game_type` and `played_by_agents`; LogError (one line naming
        `source` and the field) or ParamError otherwise."""
        ...

    def examples(self, log: Any, *, sessions: SessionsTable | None, include_chat: bool,
                 sink: Sink | None) -> GameResult:
        """The examples of one game, one per human decision, with the play-time prompt and each one's sidecar
        state line, handed to `sink` in batches as they are made; LogError (one line) for a log it cannot use."""
        ...

    def check_state(self, state: dict[str, Any], where: str) -> None:
        """A sidecar line of this game checked for its fields and their types (lib.dataset.sidecar.check_fields);
        SetError ("`where`: field NAME must be ...") otherwise."""
        ...

    def view_from_state(self, state: dict[str, Any]) -> Any:
        """The player's view rebuilt from a sidecar line, for the prompts, the checks and the policies."""
        ...

    def cap(self, state: dict[str, Any]) -> int | None:
        """The largest amount the example's answer may name, as its seat's cap (SeatRules.cap) was at play time, from
        its sidecar line (a checked one); None for a decision without amounts to cap. A line need not hold a `cap`
        field: only the game knows where its cap comes from (lib.dataset.sidecar.Example.cap asks here)."""
        ...

    def human_answer(self, answer: str, state: dict[str, Any]) -> dict[str, Any]:
        """The example's answer text as the wire message it was, checked against the line's view; ValueError
        (ActionError) or TypeError otherwise."""
        ...

    def probe(self, example: Example) -> None:
        """Read an example as the evaluation will (prompt rebuilt, baseline asked, scored): an exception here is
        a field of a type no reader expects."""
class RuleDecisions(Protocol):
    """A rule policy's decisions on one game's evaluated examples (lib.dataset.sidecar.Example)."""

    def decide(self, example: Any) -> Any:
        """The lib.evaluation.scores.Decision on a scored example: the validated message, or None and why."""
        ...

    def info(self) -> dict[str, Any]:
        """What the report says of these rules (merged into the policy's policy_info)."""
        ...

    def save(self, out: Path) -> list[str]:
        """Write what `handler.py --policy` plays of this game alone (fitted parameters) into `out`; the file
        names."""
        ...

    def samples(self) -> Mapping[str, Any]:
        """This game's sections of the evaluation's one empirical samples file (lib.evaluation.saved), which
        `handler.py --policy empirical` plays in every game: section name -> a JSON object with a `summary` (a few
        words on what it draws from); {} for rules that draw from no samples. Its PlayRules read the section back."""
        ...

    def summary(self, out: Path) -> str | None:
        """A line for stdout after the tables (what `save` wrote into `out`), or None."""
        ...


class ScoreRules(Protocol):
    """How `finetune.py --evaluate` scores a game's decisions; games that share it share one report section."""

    noun: str  # what its decisions are called on stdout: "decisions", "market decisions"
    kinds: Mapping[str, Any]  # action type -> lib.evaluation.scores.Kind: how a decision of that type is scored
    models: tuple[str, ...]  # the model policies (llm, local, ...) asked on its examples
    answer_nll: bool  # whether a model's NLL of the recorded answer is asked for on its examples
    has_picture: bool  # whether its ScoredSection draws a picture
    output_files: tuple[str, ...]  # the files its rule policies may save: an older evaluation's are removed

    def rule_decisions(self, policy: str, training: Any, evaluated_games: Sequence[str]) -> RuleDecisions | None:
        """The rule policy `policy` (baseline, fitted, empirical) on this game's examples, fitted on `training` (the
        training set, a lib.dataset.sidecar.EvalSet of every game; None for the baseline) leaving each evaluated
        training game out; None when the game has no such rules."""
        ...

    def answer_schema(self, example: Any) -> tuple[str, int | None]:
        """(decision type, cap) a model's structured output is asked for with on `example` (cap None: the decision
        has no amount to cap, as SeatRules.cap says at play time)."""
        ...

    def chat_client(self, **options: Any) -> Any:
        """The chat client (lib.agents.llm.LLMPolicy or the game's own) that asks for its structured output."""
        ...

    def parse_answer(self, answer: Any, example: Any) -> dict[str, Any]:
        """A model's answer on `example` checked strictly, as at play time; a ValueError (the game's ActionError, one
        line naming what is wrong) otherwise."""
        ...

    def score(self, examples: Sequence[Any], decisions: Mapping[str, Sequence[Any]], policies: Sequence[str],
              training: Sequence[Any] | None) -> ScoredSection:
        """Its examples scored: `decisions` are those of the policies asked on them (one per example), `policies`
        names every policy evaluated, `training` the training set's examples of this game (None without one)."""
        ...


class ScoredSection(Protocol):
    """One game's scores in an evaluation: its part of the report, its table, CSV rows and picture."""

    report: dict[str, Any]  # its keys of evaluation_report.json: scores, intervals, references, distances

    def table(self) -> str:
        """The report part as printed on stdout."""
        ...

    def decision_rows(self) -> tuple[list[str], list[list[Any]]]:
        """The per-decision CSV's columns and rows (one per example and policy or reference); none: ([], [])."""
        ...

    def draw(self, path: Path, title: str) -> None:
        """Its picture, as PNG, to `path` (only asked when its ScoreRules.has_picture)."""
        ...


class Game(Protocol):
    """A registered game: its name (the server's game_type) and its parts."""

    name: str
    title: str  # for people: "voting", "Harberger", "futarchy"
    rules: GameRules
    server: ServerRules
    seat: SeatRules
    answers: AnswerRules
    play: PlayRules
    data: DataRules
    scores: ScoreRules | None  # None: `finetune.py --evaluate` cannot score it
    outcomes: Any  # a lib.study.outcomes.GameOutcomes (its study tables and report), or None: no studies of it
    prompts: PromptRules | None  # None: only the default prompt


@dataclass(frozen=True)
class GameDefinition:
    """The record a game folder builds its Game from."""

    name: str
    title: str
    rules: GameRules
    server: ServerRules
    seat: SeatRules
    answers: AnswerRules
    play: PlayRules
    data: DataRules
    scores: ScoreRules | None = None
    outcomes: Any = None
    prompts: PromptRules | None = None


def groups_from_roles(roles: Mapping[int, int], groups: Mapping[str, int]) -> dict[str, tuple[int, ...]]:
    """Seat groups from seat -> role and the game's own group name -> role (e.g. lib.ibex.params.SEAT_GROUPS for
    the IBEX games), in the order of `groups`, leaving out groups without a seat."""
    found = {name: tuple(seat for seat, r in sorted(roles.items()) if r == role) for name, role in groups.items()}
    return {name: seats for name, seats in found.items() if seats}


def prompt_variants(game: Game) -> dict[str, str]:
    """The prompt variants of `game`: name -> what it changes and what it is for; the default first."""
    variants = dict(game.prompts.variants) if game.prompts is not None else {}
    default = variants.pop(DEFAULT_PROMPT, "the training set's prompt, exactly")
    return {DEFAULT_PROMPT: default, **variants}


def check_prompt_variant(game: Game, variant: str) -> str:
    """`variant` when `game` has it; UnknownPromptVariant (one line: the bad name and the game's variants) otherwise."""
    names = prompt_variants(game)
    if variant not in names:
        raise UnknownPromptVariant(f"{variant!r} is not a prompt variant of the {game.title} game (it has "
                                   f"{', '.join(names)})"[:300])
    return variant


def variant_messages(game: Game, variant: str, view: Any, messages: list[dict[str, str]]) -> list[dict[str, str]]:
    """The messages of prompt `variant` for a decision whose default (training) messages are `messages`: these
    themselves for the default, else the game's rewrite of them (UnknownPromptVariant for a variant it lacks)."""
    if variant == DEFAULT_PROMPT:
        return messages
    check_prompt_variant(game, variant)
    assert game.prompts is not None  # check_prompt_variant knows only the default without a prompts part
    return game.prompts.rewrite(variant, view, messages)
