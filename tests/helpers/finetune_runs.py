"""Helpers shared by several test files (moved from test_finetune.py)."""

import json
from pathlib import Path

FAST = ["--poll-interval", "0.01"]


def write_dataset(path: Path, rounds) -> Path:
    lines = [json.dumps({"messages": [
        {"role": "system", "content": "You are a participant in an IBEX voting game."},
        {"role": "user", "content": f"Round {i}: the proposal pays you {i % 7 * 10}. Vote?"},
        {"role": "assistant", "content": "yes" if i % 2 else "no"}]}) for i in rounds]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
