"""Compiled vs eager training step of a tiny dense model on CPU (issue 16.6; target ≥ 1.2×).

Our Transformer (d=64, L=4, H=4, H_kv=2, f=192, V=512) on a random batch (B=4, T=64), fp32; one step is
zero_grad -> forward -> backward -> AdamW.step (bench_train's harness). "compiled" is the same model with every
block compiled by `sparsecod.train.parallel.compile_blocks`, what `train.compile: true` does in training. The
candidates are timed round-robin in one process after a warmup that includes the compilation; medians compared.
The compile time itself (first step) is reported separately.

Usage: python bench/bench_compile.py [--quick] [--steps 200 --warmup 3] [--threads 2]
Last line: `speedup` = eager ÷ compiled median s/step, `speedup_fastest` = the same for the fastest steps (less
hit by other processes on a loaded machine), plus the step times and the compile time.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from bench_train import Candidate, banner, final_line, make_optimizer, run_interleaved, shifted_targets, train_step  # noqa: E402

D, LAYERS, HEADS, KV_HEADS, FFN, VOCAB, BATCH, SEQ = 64, 4, 4, 2, 192, 512, 4, 64


def candidates() -> list[Candidate]:
    from sparsecod.model import ModelConfig, Transformer
    from sparsecod.train.parallel import compile_blocks

    cfg = ModelConfig(n_layers=LAYERS, d_model=D, n_heads=HEADS, n_kv_heads=KV_HEADS, d_ff=FFN, vocab_size=VOCAB,
                      pad_vocab_to=64)
    torch.manual_seed(0)
    eager = Transformer(cfg).train()
    compiled = copy.deepcopy(eager)
    compile_blocks(compiled)

    def loss_fn(m, x):
        return m(x, shifted_targets(x), return_logits=False).loss

    n = sum(p.numel() for p in eager.parameters())
    return [Candidate("eager", eager, loss_fn, n, n, LAYERS, D), Candidate("compiled", compiled, loss_fn, n, n, LAYERS, D)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="few steps; numbers mean nothing")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    steps, warmup = (4, 1) if args.quick else (args.steps, args.warmup)
    load_start = banner("bench_compile", args.threads)
    x = torch.randint(0, VOCAB, (BATCH, SEQ), generator=torch.Generator().manual_seed(1))
    eager, compiled = candidates()
    compiled.optimizer = make_optimizer(compiled.model)
    t0 = time.perf_counter()
    train_step(compiled, x, "fp32")  # compilation happens here
    compile_s = time.perf_counter() - t0
    res = run_interleaved([eager, compiled], "fp32", warmup, steps, x=x)
    e, c = res["eager"]["step_s"], res["compiled"]["step_s"]
    fastest = res["eager"]["step_min"] / res["compiled"]["step_min"]
    print(f"eager {e * 1e3:.2f} ms/step, compiled {c * 1e3:.2f} ms/step, speedup {e / c:.2f}x "
          f"(fastest steps {fastest:.2f}x; first compiled step {compile_s:.1f} s)", flush=True)
    load_end = banner("bench_compile", args.threads)
    print(final_line({"speedup": e / c, "speedup_fastest": fastest, "eager_ms": e * 1e3, "compiled_ms": c * 1e3, "compile_s": compile_s,
                      "load_start": load_start, "load_end": load_end}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
