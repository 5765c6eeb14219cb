"""What the IBEX games (lib/games/voting, lib/games/market) share, so that no game folder imports another's.

A game folder may import this package and the generic modules (lib.ibex, lib.dataset, lib.evaluation, ...), never
another game's folder (tests/games/test_registry.py checks it). Only pieces that more than one game uses live here.
"""
