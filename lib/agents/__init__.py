"""Agents on an IBEX server: one seat's session and decisions, model calls, records, run modes."""
