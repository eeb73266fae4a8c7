"""Helpers shared by tests/test_metrics_*.py: tiny random models, identity blocks, one intra-op thread."""

from __future__ import annotations

import pytest
import torch

from sparsecod.model import ModelConfig, MoEConfig, Transformer

VOCAB = 64
DENSE = ModelConfig(n_layers=4, d_model=32, n_heads=4, n_kv_heads=2, d_ff=48, vocab_size=VOCAB, pad_vocab_to=64)
MOE = DENSE.replace(d_ff=0, moe=MoEConfig(n_experts=4, top_k=2, d_expert=16, d_shared=16))


def tiny_model(cfg: ModelConfig = DENSE, seed: int = 0, scale: float = 1.0) -> Transformer:
    """A random model in eval mode; `scale` multiplies every block matrix (larger = more non-linear blocks)."""
    torch.manual_seed(seed)
    model = Transformer(cfg).eval()
    if scale != 1.0:
        with torch.no_grad():
            for name, p in model.named_parameters():
                if name.startswith("blocks.") and p.ndim >= 2:
                    p.mul_(scale)
    return model


def make_identity(model: Transformer, layer: int) -> None:
    """Zero the output projections of block `layer` (attention out, FFN/experts down): the block is x -> x."""
    block = model.blocks[layer]
    with torch.no_grad():
        block.attn.out.weight.zero_()
        ffn = block.ffn
        if hasattr(ffn, "experts"):
            ffn.experts.down.zero_()
            if ffn.shared is not None:
                ffn.shared.down.weight.zero_()
        else:
            ffn.down.weight.zero_()


def tokens(n: int, T: int, seed: int = 1, vocab: int = VOCAB) -> torch.Tensor:
    return torch.randint(0, vocab, (n, T), generator=torch.Generator().manual_seed(seed))


@pytest.fixture(autouse=True)
def one_thread():
    """Two shared cores: one intra-op thread is much faster for these tiny models."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
