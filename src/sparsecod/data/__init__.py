"""Data layer (protocol §1.1, §1.6): corpora, tokenizers, token shards.

`DataConfig` (the `data:` config section), `build_shards(cfg, out_dir)` writes train.bin / heldout.bin /
tokenizer.json / meta.json, `open_tokens(shard_dir, split)` memory-maps a split. Heavy modules load lazily.
"""

from __future__ import annotations

import importlib
from typing import Any

from .config import DataConfig

_LAZY = {
    "BuildResult": "shards", "build_shards": "shards", "open_tokens": "shards", "read_meta": "shards",
    "iter_documents": "corpus", "iter_split": "corpus", "is_heldout": "corpus",
    "EOS_TOKEN": "tokenizer", "eos_id": "tokenizer", "load_tokenizer": "tokenizer", "resolve_tokenizer": "tokenizer",
    "OfflineError": "network",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["DataConfig", *_LAZY]
