"""A fourth game, for tests only: a two-player ultimatum game defined in this one folder (issue #21 item 4)."""
