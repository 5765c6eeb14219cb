"""Trainer callbacks for tests/training/test_lora.py, apart so that the test module imports transformers (and torch)
only when a test that trains runs, not when pytest collects it in every worker."""

from __future__ import annotations

import os
import signal

import torch
from transformers import TrainerCallback


class Grab(TrainerCallback):
    """Keeps the first training batch exactly as the model receives it."""

    def on_train_begin(self, args, state, control, train_dataloader=None, **kwargs):
        self.batch = next(iter(train_dataloader))


class Interrupt(TrainerCallback):
    """Presses Ctrl-C during step at_step: a real SIGINT to this process."""

    def __init__(self, at_step: int):
        self.at_step = at_step

    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step + 1 == self.at_step:
            os.kill(os.getpid(), signal.SIGINT)


class RunOutOfMemory(TrainerCallback):
    """The device runs out of memory in the second step, as a too large batch on a GPU does."""

    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step == 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
