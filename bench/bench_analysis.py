"""Benchmark of the analysis fast paths (issue 4) on a random L=16 model (plain script, no asserts).

* M3 Jacobian: vmapped VJPs over chunks of basis vectors (one forward per micro-batch and block) vs a loop
  of one backward pass per output feature (same forward, retain_graph).
* M4 causal / M5 permutation: restarting every intervention from the cached prefix state x_s / x_i, runs
  that apply the same block at the same depth batched together (`--chain-tokens`), vs recomputing each
  intervened forward from the embedding, one at a time.

Each variant runs `--reps` times interleaved; medians are compared. The last line is
`jacobian_speedup=... causal_speedup=... permutation_speedup=...` (targets: >= 5x Jacobian, >= 1.5x
permutation). Prefix caching saves block evaluations: for L blocks the permutation needs
Σ_i (L−1−i)(L−i) instead of L·L(L−1)/2 of them (1.41x at L = 16, 1.45x at L = 32, plus the shared LM-head
cost), the causal score Σ_s (L−1−s) instead of (L−1)², about 2x. The vmapped Jacobian does the same
floating-point work as the loop; it wins by batching small kernels (large on GPUs, small on a CPU,
where fused-SDPA backward has no batching rule and is looped per basis vector).

Suite (issue 9): wall time of the whole `python -m sparsecod analyze` command (all eight metrics, settings of
`config/smoke.yaml`) on a saved random L=16 smoke-size model (d=64, 16 heads, f=128, V=2048, T=32) and a random
heldout shard, in a subprocess: what one analysis job of the smoke workflow costs, start-up included.
`--quick` runs it with fewer samples; `--no-suite` skips it.

Usage: python bench/bench_analysis.py [--quick] [--d 64 --heads 16 --window 64 --windows 8 --threads 1] [--no-suite]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from sparsecod.metrics.causal import causal_matrix
from sparsecod.metrics.jacobian import averaged_jacobians
from sparsecod.metrics.permutation import permutation_losses
from sparsecod.model import ModelConfig, Transformer


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


ROOT = Path(__file__).resolve().parent.parent
SUITE_METRICS = "jacobian,causal,permutation,usefulness,weight_sparsity,attention,kurtosis,perplexity"


def banner(label: str, threads: int) -> float:
    """Versions, thread count and the 1-minute load average (issue 9 conventions); returns the load average."""
    try:
        import transformers

        tf = transformers.__version__
    except ImportError:
        tf = "not installed"
    load = os.getloadavg()[0]
    print(f"[{label}] {time.strftime('%Y-%m-%d %H:%M:%S %Z')}  torch {torch.__version__}, transformers {tf}  "
          f"torch threads {threads}  nproc {os.cpu_count()}  loadavg(1 min) {load:.2f}", flush=True)
    return load


def suite_seconds(threads: int, quick: bool) -> float:
    """Wall time of `python -m sparsecod analyze <run> --metric <all eight>` on a random L=16 smoke model."""
    from sparsecod.config import RunConfig, TrainConfig
    from sparsecod.model import save_model

    cfg = ModelConfig(n_layers=16, d_model=64, n_heads=16, n_kv_heads=16, d_ff=128, vocab_size=2048)
    with tempfile.TemporaryDirectory() as tmp:
        shard, run = Path(tmp) / "shard", Path(tmp) / "runs" / "depth-L16"
        shard.mkdir()
        n = 60_000
        rng = np.random.default_rng(0)
        for split in ("train", "heldout"):
            rng.integers(0, cfg.vocab_size, n).astype(np.uint16).tofile(shard / f"{split}.bin")
        meta = {"dtype": "uint16", "eos_id": cfg.vocab_size - 1, "vocab_size": cfg.vocab_size,
                "tokenizer_sha256": "0" * 64, "splits": {"train": {"tokens": n}, "heldout": {"tokens": n}},
                "source": {"kind": "bench"}}
        (shard / "meta.json").write_text(json.dumps(meta))
        torch.manual_seed(0)
        save_model(Transformer(cfg).eval(), run / "model")
        train = TrainConfig(seq_len=32, global_batch=8, micro_batch=8, steps=1, warmup_steps=1)
        RunConfig("depth-L16", cfg, train, str(shard), meta={"group": "depth"}).save(run / "run.yaml")
        cmd = [sys.executable, "-m", "sparsecod", "analyze", str(run), "--metric", SUITE_METRICS,
               "--config", str(ROOT / "config" / "smoke.yaml"), "--heldout", str(shard), "--no-progress"]
        if quick:
            cmd += ["--settings-json", json.dumps({"samples": 2, "jacobian_samples": 1, "attention_lengths": [16, 32],
                                                   "attention_samples": 1, "ppl_tokens": 1024})]
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
        start = time.perf_counter()
        subprocess.run(cmd, cwd=tmp, env=env, check=True, capture_output=True, text=True)
        return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer windows and one repetition (< 1 min)")
    p.add_argument("--layers", type=int, default=16)
    p.add_argument("--d", type=int, default=64, help="model width (smoke scale: 64)")
    p.add_argument("--heads", type=int, default=16)
    p.add_argument("--window", type=int, default=64, help="tokens per window (smoke scale: 64)")
    p.add_argument("--windows", type=int, default=8, help="windows for causal/permutation (Jacobian: half)")
    p.add_argument("--micro-batch", type=int, default=4)
    p.add_argument("--chunk", type=int, default=64, help="basis vectors per vmapped VJP call")
    p.add_argument("--chain-tokens", type=int, default=4096, help="tokens of intervened runs batched together")
    p.add_argument("--explicit-attention", action="store_true", help="Jacobian through the explicit softmax")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-suite", action="store_true", help="skip the `sparsecod analyze` suite timing")
    args = p.parse_args()
    if args.quick:
        args.windows, args.reps = 4, 1
    torch.set_num_threads(args.threads)
    load_start = banner("start", args.threads)
    cfg = ModelConfig(n_layers=args.layers, d_model=args.d, n_heads=args.heads, n_kv_heads=args.heads,
                      d_ff=2 * args.d, vocab_size=2048)
    torch.manual_seed(0)
    model = Transformer(cfg).eval()
    windows = torch.randint(0, cfg.vocab_size, (args.windows, args.window), generator=torch.Generator().manual_seed(1))
    jac_windows = windows[: max(1, args.windows // 2)]
    print(f"model L={cfg.n_layers} d={cfg.d_model} H={cfg.n_heads} V={cfg.vocab_size}; windows {tuple(windows.shape)}, "
          f"Jacobian {tuple(jac_windows.shape)}, threads {args.threads}")

    cases = {
        "jacobian": (
            lambda: averaged_jacobians(model, jac_windows, args.micro_batch, args.chunk, method="vmap",
                                       explicit_attention=args.explicit_attention),
            lambda: averaged_jacobians(model, jac_windows, args.micro_batch, args.chunk, method="loop"),
        ),
        "causal": (
            lambda: causal_matrix(model, windows, args.micro_batch, chain_tokens=args.chain_tokens),
            lambda: causal_matrix(model, windows, args.micro_batch, from_cache=False),
        ),
        "permutation": (
            lambda: permutation_losses(model, windows, args.micro_batch, chain_tokens=args.chain_tokens),
            lambda: permutation_losses(model, windows, args.micro_batch, from_cache=False),
        ),
    }
    ratios = {}
    for name, (fast, slow) in cases.items():
        fast()  # warm-up (allocator, first-call dispatch)
        t_fast, t_slow = [], []
        for _ in range(args.reps):
            t_fast.append(timed(fast))
            t_slow.append(timed(slow))
        f, s = statistics.median(t_fast), statistics.median(t_slow)
        ratios[name] = s / f
        print(f"{name:12s} fast {f:8.3f} s   baseline {s:8.3f} s   speedup {s / f:5.2f}x")
    pairs = {f"{name}_speedup": f"{r:.2f}" for name, r in ratios.items()}
    if not args.no_suite:
        suite = suite_seconds(args.threads, args.quick)
        print(f"analysis suite (`sparsecod analyze`, 8 metrics, L=16 smoke model{', quick settings' if args.quick else ''}): "
              f"{suite:.1f} s")
        pairs["suite_s"] = f"{suite:.1f}"
    load_end = banner("end", args.threads)
    pairs.update({"threads": args.threads, "load_start": f"{load_start:.2f}", "load_end": f"{load_end:.2f}"})
    print(" ".join(f"{k}={v}" for k, v in pairs.items()))


if __name__ == "__main__":
    main()
