"""Fixtures shared by tests/test_train_*.py: a hand-written token shard and tiny run configs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from sparsecod.config import RunConfig, TrainConfig
from sparsecod.model import ModelConfig, MoEConfig

VOCAB = 96

MODELS = {
    "dense": ModelConfig(n_layers=2, d_model=32, n_heads=4, n_kv_heads=4, d_ff=64, vocab_size=VOCAB, pad_vocab_to=32),
    "gqa": ModelConfig(n_layers=2, d_model=32, n_heads=4, n_kv_heads=2, d_ff=64, vocab_size=VOCAB, pad_vocab_to=32),
    "moe": ModelConfig(
        n_layers=2, d_model=32, n_heads=4, n_kv_heads=4, d_ff=0, vocab_size=VOCAB, pad_vocab_to=32,
        moe=MoEConfig(n_experts=4, top_k=2, d_expert=16, d_shared=16),
    ),
}


def make_shard(directory: Path, n_train: int = 20_000, n_heldout: int = 3_000, seed: int = 0) -> Path:
    """Shard contract by hand: train.bin / heldout.bin (uint16), meta.json, tokenizer.json.

    Tokens follow a noisy "next = previous + 1" rule, so a model can learn and losses move.
    """
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("heldout", n_heldout)):
        steps = np.where(rng.random(n) < 0.8, 1, rng.integers(0, VOCAB, n))
        (np.cumsum(steps) % VOCAB).astype(np.uint16).tofile(directory / f"{split}.bin")
    meta = {
        "dtype": "uint16", "eos_id": VOCAB - 1, "vocab_size": VOCAB, "tokenizer_sha256": "0" * 64,
        "splits": {"train": {"tokens": n_train}, "heldout": {"tokens": n_heldout}}, "source": {"kind": "test"},
    }
    (directory / "meta.json").write_text(json.dumps(meta))
    (directory / "tokenizer.json").write_text(json.dumps({"version": "1.0", "model": {"type": "test"}}))
    return directory


def tiny_run(shard: Path, family: str = "gqa", run_id: str = "tiny", **train) -> RunConfig:
    base = dict(
        seq_len=16, global_batch=8, micro_batch=4, steps=8, lr=3e-3, warmup_steps=2, ckpt_every=3,
        accelerator="cpu", precision="32-true", var_every=1, kurtosis_every=0, val_every=0, val_tokens=0,
    )
    base.update(train)
    return RunConfig(run_id=run_id, model=MODELS[family], train=TrainConfig(**base), data=str(shard))


@pytest.fixture
def one_thread():
    """Two shared cores: one intra-op thread per process is ~40x faster for these tiny models."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def shard(tmp_path) -> Path:
    return make_shard(tmp_path / "shard")
