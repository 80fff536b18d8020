"""Errors that name a user's mistake (see `rnn_tasks.cli` for how the scripts report them)."""

from __future__ import annotations


class ConfigError(ValueError):
    """A config value of the wrong type or range: the message names the key, the value given
    and what is allowed, e.g. ``trainer.max_epochs must be a whole number >= -1, got 'abc'``."""
