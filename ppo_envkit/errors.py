"""Errors that training raises and the command line reports in one line.

A leaf module (no torch, no gymnasium), so that the CLI can name these classes
without importing the training code.
"""

from __future__ import annotations

from pathlib import Path


class ConfigError(ValueError):
    """A setting is invalid; the message is one readable line."""


class NonFiniteError(RuntimeError):
    """An observation, reward or loss was NaN or infinite."""


class AgentFileError(ValueError):
    """An agent directory that is missing, corrupt, unsafe or incompatible."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training; a checkpoint was saved first (``checkpoint`` attribute)."""

    def __init__(self, checkpoint: Path | None):
        super().__init__(f"training interrupted; checkpoint saved to {checkpoint}")
        self.checkpoint = checkpoint


__all__ = ["AgentFileError", "ConfigError", "NonFiniteError", "TrainingInterrupted"]
