"""Harberger and futarchy: rules, order book, view, actions, prompts, policies, examples, scores."""
