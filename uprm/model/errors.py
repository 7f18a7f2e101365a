"""Errors the model package raises for bad input: each says what was wrong and what to do."""
from __future__ import annotations


class UPRMError(ValueError):
    """Base of every user-facing error in ``uprm.model`` and ``uprm.featurize``."""


class ConfigError(UPRMError):
    """An invalid ``UPRMConfig`` / ``LMConfig`` value."""


class InputError(UPRMError):
    """Tensors in ``ExpertInputs`` (or evidence given to ``featurize``) of the wrong shape or range."""


class PromptError(UPRMError):
    """The prompt and the fused video tokens do not fit together (e.g. placeholder count mismatch)."""


class CheckpointError(UPRMError):
    """A checkpoint folder that is missing files, or whose weights do not match the model."""


class LanguageModelUnavailable(UPRMError):
    """The language model's weights cannot be found offline."""
