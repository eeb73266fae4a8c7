"""Dense training-step throughput: our `sparsecod` Transformer vs `transformers.LlamaForCausalLM` (issue 9).

Both models get the identical configuration (d=256, L=8, H=4, H_kv=2, SwiGLU f=688, V=8192, RoPE θ=1e4,
RMSNorm eps 1e-5, untied head, no biases, SDPA attention) and the same random token batch (B=8, T=256).
One step is zero_grad -> forward -> backward -> AdamW.step (betas 0.9/0.95, eps 1e-8, weight decay 0.1 on
matrices), in fp32 and under bf16 autocast. The candidates are timed round-robin in one process (one step each
per round, the order rotating every round), so load from other processes hits both alike; medians are compared.

Achieved FLOP/s use the usual estimate 6·N + 12·L·d·T per token (N = matmul parameters a token touches,
embedding table excluded, LM head included). Peak memory: each candidate runs a few steps in a fresh
subprocess and reports its peak RSS (resource.getrusage ru_maxrss) and its RSS just before the first step.

The shared harness here (Candidate, run_interleaved, measure_memory, ...) is reused by bench/bench_moe.py.

Usage: python bench/bench_train.py [--quick] [--precision fp32,bf16] [--steps 10 --warmup 3] [--no-memory]
The last line is `name=value` pairs: ratio_fp32 / ratio_bf16 = ours tokens/s ÷ HF tokens/s (target ≥ 1.0).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

D, LAYERS, HEADS, KV_HEADS, FFN, VOCAB, THETA, EPS = 256, 8, 4, 2, 688, 8192, 1e4, 1e-5
BATCH, SEQ = 8, 256
PRECISIONS = ("fp32", "bf16")


# --- environment ----------------------------------------------------------------------------
def versions() -> str:
    try:
        import transformers

        tf = transformers.__version__
    except ImportError:  # pragma: no cover - transformers is a test extra
        tf = "not installed"
    return f"torch {torch.__version__}, transformers {tf}"


def banner(label: str, threads: int | None = None) -> float:
    """Print versions, threads and the 1-minute load average; return the load average."""
    load = os.getloadavg()[0]
    threads = torch.get_num_threads() if threads is None else threads
    print(f"[{label}] {time.strftime('%Y-%m-%d %H:%M:%S %Z')}  {versions()}  torch threads {threads}  "
          f"nproc {os.cpu_count()}  loadavg(1 min) {load:.2f}", flush=True)
    return load


def final_line(pairs: dict[str, object]) -> str:
    """The single machine-readable last line: space-separated name=value (no spaces inside values)."""
    def fmt(v: object) -> str:
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v).replace(" ", "_")
    return " ".join(f"{k}={fmt(v)}" for k, v in pairs.items())


# --- candidates -------------------------------------------------------------------------------
@dataclass
class Candidate:
    """A model, how to get its training loss from a token batch, and what the FLOP estimate needs."""

    name: str
    model: nn.Module
    loss_fn: Callable[[nn.Module, torch.Tensor], torch.Tensor]
    active_params: int  # matmul parameters per token (experts at the top_k/E rate), no embedding table
    total_params: int
    n_layers: int = LAYERS
    d_model: int = D
    times: list[float] = field(default_factory=list)
    optimizer: torch.optim.Optimizer | None = None


def matmul_params(model: nn.Module, embedding_names: tuple[str, ...], expert_rate: float = 1.0,
                  expert_key: str = "experts") -> int:
    """Parameters of ≥2-D tensors except the embedding table; routed experts counted at `expert_rate`."""
    n = 0.0
    for name, p in model.named_parameters():
        if p.dim() < 2 or any(e in name for e in embedding_names):
            continue
        n += p.numel() * (expert_rate if expert_key in name else 1.0)
    return int(n)


def shifted_targets(x: torch.Tensor) -> torch.Tensor:
    """Next-token targets for our model (HF shifts `labels` internally): x[:, 1:] and -100 at the end."""
    return torch.cat([x[:, 1:], torch.full_like(x[:, :1], -100)], dim=1)


def our_config(moe=None):
    from sparsecod.model import ModelConfig

    return ModelConfig(n_layers=LAYERS, d_model=D, n_heads=HEADS, n_kv_heads=KV_HEADS, d_ff=FFN, vocab_size=VOCAB,
                       pad_vocab_to=128, norm_eps=EPS, rope_theta=THETA, moe=moe)


def ours_candidate(name: str = "ours-dense", moe=None, seed: int = 0) -> Candidate:
    from sparsecod.model import Transformer

    cfg = our_config(moe)
    torch.manual_seed(seed)
    model = Transformer(cfg).train()
    rate = moe.top_k / moe.n_experts if moe is not None else 1.0

    def loss_fn(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return m(x, shifted_targets(x), return_logits=False).loss

    return Candidate(name, model, loss_fn, matmul_params(model, ("wte",), rate, "experts."),
                     sum(p.numel() for p in model.parameters()))


def hf_common() -> dict:
    return dict(hidden_size=D, num_hidden_layers=LAYERS, num_attention_heads=HEADS, num_key_value_heads=KV_HEADS,
                vocab_size=VOCAB, max_position_embeddings=1024, tie_word_embeddings=False, rms_norm_eps=EPS,
                rope_theta=THETA, attention_bias=False, bos_token_id=1, eos_token_id=2, pad_token_id=0)


def hf_loss(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return m(input_ids=x, labels=x, use_cache=False).loss


def hf_llama_candidate(seed: int = 0) -> Candidate:
    import transformers

    config = transformers.LlamaConfig(intermediate_size=FFN, mlp_bias=False, **hf_common())
    config._attn_implementation = "sdpa"
    torch.manual_seed(seed)
    model = transformers.LlamaForCausalLM(config).train()
    return Candidate("hf-llama", model, hf_loss, matmul_params(model, ("embed_tokens",)),
                     sum(p.numel() for p in model.parameters()))


BUILDERS: dict[str, Callable[[], Candidate]] = {"ours-dense": ours_candidate, "hf-llama": hf_llama_candidate}


# --- timing -------------------------------------------------------------------------------------
def make_optimizer(model: nn.Module) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": 0.1},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=1e-4, betas=(0.9, 0.95), eps=1e-8)


def autocast_ctx(precision: str):
    return torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else nullcontext()


def train_step(c: Candidate, x: torch.Tensor, precision: str) -> float:
    start = time.perf_counter()
    c.optimizer.zero_grad(set_to_none=True)
    with autocast_ctx(precision):
        loss = c.loss_fn(c.model, x)
    loss.backward()
    c.optimizer.step()
    elapsed = time.perf_counter() - start
    if not torch.isfinite(loss.detach()):
        raise RuntimeError(f"{c.name}: non-finite loss {loss.item()}")
    return elapsed


def token_batch(batch: int = BATCH, seq: int = SEQ, seed: int = 1234) -> torch.Tensor:
    return torch.randint(0, VOCAB, (batch, seq), generator=torch.Generator().manual_seed(seed))


def run_interleaved(cands: list[Candidate], precision: str, warmup: int, steps: int,
                    x: torch.Tensor | None = None) -> dict[str, dict]:
    """Round-robin timing (order rotates each round); per candidate: median s/step, tokens/s, GFLOP/s."""
    x = token_batch() if x is None else x
    for c in cands:
        c.optimizer, c.times = make_optimizer(c.model), []
    for _ in range(warmup):
        for c in cands:
            train_step(c, x, precision)
    for r in range(steps):
        k = r % len(cands)
        for c in cands[k:] + cands[:k]:
            c.times.append(train_step(c, x, precision))
    tokens, T = x.numel(), x.shape[1]
    out = {}
    for c in cands:
        med = statistics.median(c.times)
        flops_per_token = 6 * c.active_params + 12 * c.n_layers * c.d_model * T
        out[c.name] = dict(step_s=med, step_min=min(c.times), step_max=max(c.times), tok_s=tokens / med,
                           gflop_s=flops_per_token * tokens / med / 1e9, times=c.times)
        c.optimizer = None  # free the AdamW state before the next precision
    return out


def paired_ratio(ours: list[float], ref: list[float]) -> float:
    """Median over rounds of t_ref / t_ours (the two steps of a round ran back to back)."""
    return statistics.median(r / o for o, r in zip(ours, ref))


def print_results(precision: str, res: dict[str, dict], ref: str, batch: int = BATCH, seq: int = SEQ) -> None:
    print(f"\n-- {precision}: median of {len(next(iter(res.values()))['times'])} timed steps "
          f"({batch}x{seq} = {batch * seq} tokens/step) --")
    print(f"{'candidate':28s} {'s/step':>8s} {'min':>7s} {'max':>7s} {'tokens/s':>9s} {'GFLOP/s':>8s} {'vs ' + ref:>12s}")
    for name, r in res.items():
        print(f"{name:28s} {r['step_s']:8.3f} {r['step_min']:7.3f} {r['step_max']:7.3f} {r['tok_s']:9.0f} "
              f"{r['gflop_s']:8.1f} {r['tok_s'] / res[ref]['tok_s']:11.2f}x")


# --- memory: one fresh subprocess per candidate -----------------------------------------------------
def rss_now_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mib() -> float:
    """Peak RSS of this process image: VmHWM of /proc/self/status.

    Not getrusage's ru_maxrss: Linux carries ru_maxrss over fork+exec, so a child spawned by a big parent
    reports at least the parent's peak. VmHWM belongs to the address space and starts fresh at exec.
    """
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux; fallback only


def memory_child(builders: dict[str, Callable[[], Candidate]], name: str, precision: str, steps: int,
                 threads: int, batch: int) -> None:
    torch.set_num_threads(threads)
    c = builders[name]()
    c.optimizer = make_optimizer(c.model)
    x = token_batch(batch)
    before = rss_now_mib()
    for _ in range(steps):
        train_step(c, x, precision)
    print(json.dumps({"name": name, "precision": precision, "rss_before_mib": before, "peak_rss_mib": peak_rss_mib(),
                      "ru_maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def measure_memory(script: str, names: list[str], precisions: list[str], steps: int, threads: int,
                   batch: int) -> dict:
    """{(name, precision): {...}} from `script --memory-child NAME --precision P` subprocesses."""
    out = {}
    for p in precisions:
        for name in names:
            cmd = [sys.executable, script, "--memory-child", name, "--precision", p, "--memory-steps", str(steps),
                   "--threads", str(threads), "--batch", str(batch)]
            res = subprocess.run(cmd, capture_output=True, text=True, check=True)
            out[(name, p)] = json.loads(res.stdout.strip().splitlines()[-1])
    return out


def print_memory(mem: dict) -> None:
    print("\n-- peak RSS (VmHWM) of training steps, a fresh subprocess each; 'before' = RSS after imports and "
          "model+optimizer build, before the first step --")
    print(f"{'candidate':28s} {'precision':>9s} {'before MiB':>11s} {'peak MiB':>9s} {'step delta':>11s}")
    for (name, p), m in mem.items():
        print(f"{name:28s} {p:>9s} {m['rss_before_mib']:11.0f} {m['peak_rss_mib']:9.0f} "
              f"{m['peak_rss_mib'] - m['rss_before_mib']:11.0f}")


def common_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true",
                   help="smoke run of the script (< 1 min): batch 1, 1 warm-up + 3 timed steps, memory in fp32 only")
    p.add_argument("--batch", type=int, default=BATCH, help="sequences per step (T = 256)")
    p.add_argument("--precision", default="fp32,bf16", help="comma list of fp32, bf16 (bf16 = autocast)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--steps", type=int, default=10, help="timed steps per candidate and precision")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-memory", action="store_true", help="skip the peak-RSS subprocesses")
    p.add_argument("--memory-steps", type=int, default=2, help="training steps per memory subprocess")
    p.add_argument("--memory-child", help=argparse.SUPPRESS)


def apply_quick(args: argparse.Namespace) -> list[str]:
    if args.quick:
        args.warmup, args.steps, args.memory_steps, args.batch = 1, 3, 1, 1
    precisions = [p for p in args.precision.split(",") if p]
    bad = set(precisions) - set(PRECISIONS)
    if bad:
        raise SystemExit(f"--precision: unknown {sorted(bad)}; use fp32 and/or bf16")
    return precisions


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common_args(p)
    args = p.parse_args()
    precisions = apply_quick(args)
    if args.memory_child:
        memory_child(BUILDERS, args.memory_child, precisions[0], args.memory_steps, args.threads, args.batch)
        return
    torch.set_num_threads(args.threads)
    load_start = banner("start", args.threads)

    ours, hf = ours_candidate(), hf_llama_candidate()
    print(f"parameters: ours {ours.total_params:,}  hf-llama {hf.total_params:,}  "
          f"({'equal' if ours.total_params == hf.total_params else 'DIFFERENT'}); "
          f"matmul params per token (FLOP count) ours {ours.active_params:,}  hf {hf.active_params:,}")
    result: dict[str, object] = {"params_ours": ours.total_params, "params_hf": hf.total_params,
                                 "params_equal": int(ours.total_params == hf.total_params)}
    for prec in precisions:
        res = run_interleaved([ours, hf], prec, args.warmup, args.steps, token_batch(args.batch))
        print_results(prec, res, "hf-llama", args.batch)
        ratio = res["ours-dense"]["tok_s"] / res["hf-llama"]["tok_s"]
        paired = paired_ratio(res["ours-dense"]["times"], res["hf-llama"]["times"])
        best = res["hf-llama"]["step_min"] / res["ours-dense"]["step_min"]
        print(f"ratio ours/hf ({prec}): {ratio:.3f} (median of per-round pairs {paired:.3f}, fastest steps {best:.3f});"
              " target >= 1.0")
        result.update({f"ratio_{prec}": ratio, f"paired_ratio_{prec}": paired, f"best_ratio_{prec}": best,
                       f"ours_tok_s_{prec}": res["ours-dense"]["tok_s"], f"hf_tok_s_{prec}": res["hf-llama"]["tok_s"],
                       f"ours_gflop_s_{prec}": res["ours-dense"]["gflop_s"],
                       f"hf_gflop_s_{prec}": res["hf-llama"]["gflop_s"]})
    del ours, hf
    finish(result, args, os.path.abspath(__file__), list(BUILDERS), precisions, load_start)


def finish(result: dict, args: argparse.Namespace, script: str, names: list[str], precisions: list[str],
           load_start: float) -> None:
    """Peak memory of each candidate (unless --no-memory), the end banner and the final name=value line."""
    if not args.no_memory:
        mem = measure_memory(script, names, precisions[:1] if args.quick else precisions, args.memory_steps,
                             args.threads, args.batch)
        print_memory(mem)
        for (name, prec), m in mem.items():
            result[f"peak_rss_mib_{name.replace('-', '_')}_{prec}"] = round(m["peak_rss_mib"])
    load_end = banner("end", args.threads)
    result.update({"batch": args.batch, "seq": SEQ, "steps": args.steps, "threads": args.threads,
                   "load_start": load_start, "load_end": load_end})
    print(final_line(result))


if __name__ == "__main__":
    main()
