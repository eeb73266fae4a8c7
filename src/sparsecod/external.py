"""External models (issue 19): the paper's layer metrics on any transformers `LlamaForCausalLM` checkpoint.

`sparsecod analyze CHECKPOINT --out OUT` and the workflow's `external:` section (config key `external: {name:
path}`, results in `<results>/external/<name>/`) share one layout of OUT:
    OUT/model/      the checkpoint imported into sparsecod's model (model.hf_llama.import_llama; logits equal in fp32)
    OUT/heldout/    held-out text of the workflow's `data:` corpus, tokenized with the checkpoint's own
                    tokenizer.json (train split capped at one token: only the held-out split is used)
    OUT/analysis/   the metric files (EXTERNAL_ANALYSES), as for a trained run; OUT has no run.yaml, so the
                    perplexity window T (analysis.ppl_seq_len) defaults to the checkpoint's max_position_embeddings
The held-out documents are chosen by content hash (protocol §1.1), so they are the documents the paper-style runs of
the same config are evaluated on, in the checkpoint's tokenization.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from .config.errors import ConfigError

# The metric families of an external model's figures (per-layer variance and kurtosis, Jacobian deviation,
# causal and permutation matrices, usefulness ratios) and its perplexity.
EXTERNAL_ANALYSES = ("jacobian", "causal", "permutation", "usefulness", "kurtosis", "perplexity")


def heldout_config(data: dict[str, Any], tokenizer: str | os.PathLike) -> dict[str, Any]:
    """The `data:` section with the checkpoint's tokenizer and a one-token train split (held-out only)."""
    return {**{k: v for k, v in data.items() if k != "id"}, "tokenizer": str(tokenizer), "train_tokens": 1}


def build_heldout(src: str | os.PathLike, out_dir: str | os.PathLike, data: dict[str, Any] | None,
                  progress: bool = True) -> Path:
    """Tokenize the held-out split of `data` (a `data:` section) with `src/tokenizer.json` into `out_dir`."""
    from .data.config import DataConfig
    from .data.shards import build_shards

    if not data:
        raise ConfigError(f"no held-out text for {src}: give --heldout (a shard directory tokenized with "
                          f"{Path(src) / 'tokenizer.json'}) or --config with a `data:` section to tokenize")
    build_shards(DataConfig.from_dict(heldout_config(data, Path(src) / "tokenizer.json")), out_dir,
                 progress=progress)
    return Path(out_dir)


def context_length(out: str | os.PathLike) -> int | None:
    """max_position_embeddings recorded by the import in OUT/model/config.json (None when unknown)."""
    value = json.loads((Path(out) / "model" / "config.json").read_text()).get("max_position_embeddings")
    return int(value) if value else None


def prepare(src: str | os.PathLike, out: str | os.PathLike | None, heldout: str | os.PathLike | None,
            data: dict[str, Any] | None, progress: bool = True) -> tuple[Path, Path]:
    """Import checkpoint `src` into OUT/model and find or build its held-out shard; returns (OUT, heldout dir)."""
    from .model.hf_llama import import_llama

    if out is None:
        raise ConfigError(f"{src} is a transformers checkpoint: give --out DIR for its imported model and analysis")
    out = Path(out)
    if out.resolve() == Path(src).resolve():
        raise ConfigError(f"--out {out} is the checkpoint directory itself: give a separate results directory")
    import_llama(src, out / "model")
    if heldout is None:
        heldout = build_heldout(src, out / "heldout", data, progress=progress)
    return out, Path(heldout)


NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


def external_models(config: dict[str, Any]) -> dict[str, Path]:
    """The workflow config's `external: {name: checkpoint directory}` (absent or null = none), validated."""
    section = config.get("external") or {}
    if not isinstance(section, dict):
        raise ConfigError("external must map names to transformers checkpoint directories, e.g. "
                          "external: {tinyllama: /models/TinyLlama-1.1B}")
    models = {}
    for name, path in section.items():
        if not NAME.match(str(name)):
            raise ConfigError(f"external.{name}: use letters, digits, '_', '.', '-' in the name (it is a folder)")
        if not isinstance(path, str) or not path:
            raise ConfigError(f"external.{name} must be the path of a checkpoint directory, got {path!r}")
        models[str(name)] = Path(path)
    return models
