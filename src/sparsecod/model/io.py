"""Save and load a trained model directory: `config.json` + `model.safetensors` (no pickles).

Layout of `<dir>/`: config.json {"format": "sparsecod-model", "version": 1, "model": ModelConfig},
model.safetensors (fp32 state dict). Written atomically: a crash leaves the old directory or none.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..fileio import replace_dir_atomic
from .config import ModelConfig
from .transformer import Transformer

FORMAT = "sparsecod-model"


def save_model(
    model: Transformer,
    directory: str | os.PathLike,
    extra: dict | None = None,
    tokenizer_file: str | os.PathLike | None = None,
) -> Path:
    """Write `model` to `directory` (replaced atomically).

    `extra` goes into config.json as-is; `tokenizer_file` (a `tokenizers` JSON) is copied to
    `<directory>/tokenizer.json` so evaluation and export need nothing else.
    """
    directory = Path(directory)
    with replace_dir_atomic(directory) as tmp:
        state = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(tmp / "model.safetensors"))
        meta = {"format": FORMAT, "version": 1, "model": model.cfg.to_dict(), **(extra or {})}
        (tmp / "config.json").write_text(json.dumps(meta, indent=2))
        if tokenizer_file is not None:
            shutil.copyfile(tokenizer_file, tmp / "tokenizer.json")
        for f in tmp.iterdir():
            f.chmod(0o644)
    return directory


def read_model_config(directory: str | os.PathLike) -> ModelConfig:
    path = Path(directory) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"no model at {directory}: {path} is missing (train the run first)")
    meta = json.loads(path.read_text())
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path} is not a sparsecod model directory (format={meta.get('format')!r})")
    return ModelConfig.from_dict(meta["model"])


def load_model(directory: str | os.PathLike, device: str | torch.device = "cpu") -> Transformer:
    """Build the model of `directory/config.json` and load its safetensors weights (eval mode)."""
    cfg = read_model_config(directory)
    with torch.device("meta"):
        model = Transformer(cfg)
    state = load_file(str(Path(directory) / "model.safetensors"), device=str(device))
    model.load_state_dict(state, assign=True)
    return model.eval()


def init_model(cfg: ModelConfig, seed: int) -> Transformer:
    """A run's step-0 weights: `torch.manual_seed(seed)`, then `Transformer(cfg)` (protocol §1.5: the seed sets the
    init). Training builds its model with this, and the analysis rebuilds the untrained control with it."""
    torch.manual_seed(seed)
    return Transformer(cfg)
