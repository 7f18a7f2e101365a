"""Errors the training package raises: each says what was wrong and what to do."""
from __future__ import annotations


class TrainingError(ValueError):
    """Base of every user-facing error in ``uprm.training``."""


class TrainingDataError(TrainingError):
    """An instruction file, dataset folder or feature file that cannot be read as training data."""


class ResumeError(TrainingError):
    """``--resume`` asked for, but the output folder holds no usable checkpoint of the same run."""


class RegistryError(TrainingError):
    """The model registry file is missing, damaged, or names a version that does not exist."""


class TrainingCancelled(Exception):
    """The caller's cancel flag was set; nothing was registered. Not a ValueError: nothing was wrong."""

    def __init__(self, stage: str, step: int = 0):
        super().__init__(f"cancelled during {stage}" + (f" at step {step}" if step else ""))
        self.stage = stage
        self.step = step
