"""The zoo's exceptions: one base class, each message says what was expected and how to fix it."""

from __future__ import annotations


class ZooError(Exception):
    """Base class of every error the zoo raises on purpose."""


class UnknownModelError(ZooError, LookupError):
    """A model, tag or recipe name that the registry does not know."""


class ConfigError(ZooError, ValueError):
    """Arguments or a config that cannot be honoured (contradicts weights, not JSON-serialisable, ...)."""


class WeightsError(ZooError):
    """A weight file that cannot be loaded: missing, tampered, or not matching the model."""


class IncompatibleKeysError(WeightsError):
    """A state dict whose keys or shapes do not match the model (strict loading)."""

    def __init__(self, message: str, missing=(), unexpected=(), mismatched=()):
        super().__init__(message)
        self.missing = list(missing)
        self.unexpected = list(unexpected)
        self.mismatched = list(mismatched)


class HubError(ZooError):
    """A Hugging Face Hub operation that failed: names the repo, the revision and what to do."""
