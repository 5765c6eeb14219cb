"""Logs to chat fine-tuning sets: building, sidecars, fine-tuning data checks."""
