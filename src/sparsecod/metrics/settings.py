"""Settings of the metric suite: the `analysis:` section (sparsecod.config.analysis defines its keys) and
`read_settings_file`, which finds it in a workflow config or a flat settings YAML (protocol §1.6, §2 M3-M11)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ..config.analysis import ATTENTION_EPS, METRICS, WEIGHT_EPS, AnalysisSettings
from ..config.errors import ConfigError

__all__ = ["ATTENTION_EPS", "METRICS", "WEIGHT_EPS", "AnalysisSettings", "read_settings_file"]


def read_settings_file(path: str | Path) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """A YAML file that is a workflow config (its `analysis:` section is used) or a flat settings mapping.

    Returns (settings mapping, the whole workflow config or None when the file is a flat mapping).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"analysis config {path} does not exist (give a workflow config or a settings YAML)")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping (a workflow config or analysis settings)")
    if "analysis" in data:
        section = data["analysis"] or {}
        if not isinstance(section, dict):
            raise ConfigError(f"{path}: the analysis section must be a mapping")
        return dict(section), data
    return data, None
