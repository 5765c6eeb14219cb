"""Talking to and reading IBEX: REST client, log reader, sessions table, create parameters, JS semantics."""
