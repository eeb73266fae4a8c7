"""Fixtures shared by tests/test_eval_*.py and test_model_hf_parity.py: tiny saved models with the real tokenizer."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import yaml

from _data_testutil import NEOX, needs_neox  # noqa: F401  (re-exported for the eval tests)
from sparsecod.model import ModelConfig, MoEConfig, Transformer, save_model

EVAL_DATA_ENV = "SPARSECOD_TEST_EVAL_DATA"  # local ARC/HellaSwag/MMLU copies (HF save_to_disk); .ci/run sets it
EVAL_DATA = Path(os.environ.get(EVAL_DATA_ENV, "")).expanduser()
needs_eval_data = pytest.mark.skipif(not (os.environ.get(EVAL_DATA_ENV) and (EVAL_DATA / "ai2_arc").is_dir()),
                                     reason=f"set ${EVAL_DATA_ENV} to a directory holding ai2_arc/, hellaswag/ and "
                                            "hails/mmlu_no_train/ (HF save_to_disk)")

# GQA (H=4, H_kv=2), non-default eps and theta so the exported config must carry them
GQA = ModelConfig(n_layers=2, d_model=32, n_heads=4, n_kv_heads=2, d_ff=48, vocab_size=50280, pad_vocab_to=128,
                  norm_eps=1e-6, rope_theta=5000.0)
MOE = GQA.replace(d_ff=0, moe=MoEConfig(n_experts=4, top_k=2, d_expert=16, d_shared=16))


def build_model(cfg: ModelConfig = GQA, seed: int = 0, std: float = 0.3) -> Transformer:
    """A random model with a larger init than the paper's 0.02, so log-probs differ clearly between tokens."""
    torch.manual_seed(seed)
    model = Transformer(cfg.replace(init_std=std))
    with torch.no_grad():  # random norm gains, so a mix-up of norms would show
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.uniform_(0.5, 1.5)
    return model.eval()


def save_run(run_dir: Path, cfg: ModelConfig = GQA, seq_len: int | None = 64, seed: int = 0) -> Path:
    """`<run_dir>/model` (with the NeoX tokenizer) and, if seq_len is given, a run.yaml with train.seq_len."""
    run_dir.mkdir(parents=True, exist_ok=True)
    save_model(build_model(cfg, seed), run_dir / "model", tokenizer_file=NEOX)
    if seq_len is not None:
        (run_dir / "run.yaml").write_text(yaml.safe_dump({"run_id": "t", "train": {"seq_len": seq_len}}))
    return run_dir / "model"
