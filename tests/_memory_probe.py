"""Subprocess for tests/test_memory_plan.py: peak RSS growth over two real training steps of one model.

argv[1]: JSON {"model": ModelConfig kwargs, "train": TrainConfig kwargs}. Prints {"delta": bytes}: peak RSS (VmHWM)
after two optimizer steps (gradient accumulation over the micro-batches) minus the RSS before the model existed.
Run with MALLOC_MMAP_THRESHOLD_ low, so freed tensors go back to the OS and RSS follows live memory.
"""

import json
import resource
import sys

import torch

from sparsecod.config import TrainConfig
from sparsecod.model.config import ModelConfig, MoEConfig
from sparsecod.model.transformer import Transformer
from sparsecod.train.act_ckpt import apply_act_ckpt
from sparsecod.train.optim import build_optimizer


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def _hwm() -> int:
    """Peak RSS of this process image (VmHWM; unlike ru_maxrss it starts afresh at exec, not at the parent's size)."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))


spec = json.loads(sys.argv[1])
moe = spec["model"].pop("moe", None)
model_cfg = ModelConfig(**spec["model"], moe=MoEConfig(**moe) if moe else None)
cfg = TrainConfig(**spec["train"])
torch.set_num_threads(1)
torch.manual_seed(0)
idx = torch.randint(0, model_cfg.vocab_size, (2, cfg.grad_accum, cfg.micro_batch, cfg.seq_len))
base = rss()
model = Transformer(model_cfg)
if cfg.act_ckpt:
    apply_act_ckpt(model)
opt, _ = build_optimizer(model, cfg)
for step in range(2):
    for a in range(cfg.grad_accum):
        out = model(idx[step, a], idx[step, a], return_logits=False)
        (out.loss / cfg.grad_accum).backward()
        del out
    opt.step()
    opt.zero_grad(set_to_none=True)
print(json.dumps({"delta": _hwm() - base}))
