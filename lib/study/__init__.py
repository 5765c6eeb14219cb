"""Studies (issue #23): many games, several arms, results as tidy tables.

The parts here do not depend on how agents are run: the study file (`spec`), fresh values (`values`), the results
store (`store`), tables from recorded logs (`logtables`), the model-call cache (`cache`) and the report against the
recorded games (`report`). Per-game knowledge sits in each game's `outcomes` part (lib/games/<game>/outcomes.py:
its rows and the `REPORT` describing its outcomes), which `outcomes` reaches through the registry.
"""
