"""`ConfigError`: a configuration value is invalid; its one-line message names the key and how to fix it."""

from __future__ import annotations


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the key and how to fix it."""
