"""Studies (issue #23): many games, several arms, results as tidy tables.

The parts here do not depend on how agents are run: the study file (`spec`), fresh values (`values`), the results
store (`store`), tables from recorded logs (`logtables`), the model-call cache (`cache`) and the report against the
recorded games (`report`). Per-game knowledge sits in `voting_outcomes` and `market_outcomes` (their rows and the
`REPORT` describing their outcomes), small modules meant to move into the game folders.
"""
