"""The voting game: rules, the player's view, actions, prompts, policies, resync, server rules."""
