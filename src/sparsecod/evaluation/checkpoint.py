"""Locate a trained model: a run directory (`<run>/model/`) or a model directory itself, and the run's T.

A model directory is what `sparsecod.model.save_model` writes (config.json, model.safetensors,
tokenizer.json); `sparsecod train` puts it at `<run_dir>/model` next to `<run_dir>/run.yaml`.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml


def resolve_model_dir(path: str | os.PathLike) -> Path:
    """`path` itself when it holds config.json, else `path/model`; FileNotFoundError naming both otherwise."""
    path = Path(path)
    for candidate in (path, path / "model"):
        if (candidate / "config.json").is_file() and (candidate / "model.safetensors").is_file():
            return candidate
    raise FileNotFoundError(
        f"{path} is neither a model directory (config.json + model.safetensors) nor a run directory with "
        f"model/ inside: train the run first (`sparsecod train --out {path}`)"
    )


def training_seq_len(model_dir: str | os.PathLike) -> int | None:
    """train.seq_len of `<model_dir>/../run.yaml` (the run's training T), or None when there is no run.yaml."""
    path = Path(model_dir).resolve().parent / "run.yaml"
    if not path.is_file():
        return None
    doc = yaml.safe_load(path.read_text()) or {}
    value = (doc.get("train") or {}).get("seq_len") if isinstance(doc, dict) else None
    return int(value) if value is not None else None
