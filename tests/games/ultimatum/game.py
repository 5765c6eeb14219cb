"""The ultimatum game as the registry sees it (lib.games.protocols): its parts, each from this folder. A test
registers it (lib.games.register(GAME)) and unregisters it afterwards."""

from __future__ import annotations

from lib.games.protocols import GameDefinition
from tests.games.ultimatum.answers import ANSWERS
from tests.games.ultimatum.data import DATA
from tests.games.ultimatum.play import PLAY
from tests.games.ultimatum.rules import NAME, UltimatumRules
from tests.games.ultimatum.scores import SCORES
from tests.games.ultimatum.seat import SEAT
from tests.games.ultimatum.server import UltimatumServerRules

GAME = GameDefinition(name=NAME, title="ultimatum", rules=UltimatumRules(), server=UltimatumServerRules(),
                      seat=SEAT, answers=ANSWERS, data=DATA, play=PLAY, scores=SCORES)
