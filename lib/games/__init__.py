"""The games, one folder each, behind the Protocols and the registry in lib/games/__init__.py."""
