"""GPU acceptance check (issue 16): run once on one H100/H200 (≤ 10 min) before spending GPU-months.

    python bench/gpu_check.py            # CUDA: paper shapes (Dense-1B at T=4096, one block of each large model)
    python bench/gpu_check.py --cpu      # every check at tiny shapes on CPU (CI runs this: tests/test_bench.py)

Prints one `name=value` line per check; value = `ok;…`, `fail;…`, `unsupported;…` (a kernel that refuses a shape:
SDPA then falls back to another backend) or `skipped;<why>`. Checks:
* sdpa_<backend>_hd<d_h>_g<G>: flash / mem-efficient / cuDNN SDPA (bf16, causal, enable_gqa) against the math
  backend in fp32, forward and the q/k/v gradients, head dims 64/96/128/70 (70 = abl-moe's 1120/16), G = 1/4/16;
* grouped_mm: the MoE experts' grouped GEMM (bf16, forward + backward) against the per-expert loop with ragged
  counts including empty experts (sparsecod.model.moe.Experts);
* sync_debug: torch.cuda.set_sync_debug_mode("warn") over a whole training step; value = the number of host syncs;
* dense1b_*: a real Dense-1B step (T=4096 on CUDA): initial loss against ln V, peak memory against the memory plan
  (±15 % on CUDA, ±20 % on CPU where it is the peak RSS of a fresh process), tokens/s and MFU eager and compiled;
* block_<model>: one block of every model of config/config.yaml at its largest run's T and micro-batch: the memory
  its forward keeps for the backward against the plan's per-block activations (±15 %; CPU: saved-tensor bytes);
* sharded_step: one training step with `strategy: fsdp2` (skipped with the reason where the branch lacks it);
* ckpt_save_s / ckpt_load_s: `save_model` / `load_model` of a 1.28 B model (Dense-1B; tiny on CPU).
The last line is `gpu_check=ok` or `gpu_check=fail;<failed checks>`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from sparsecod.config import TrainConfig  # noqa: E402
from sparsecod.experiments import load_registry  # noqa: E402
from sparsecod.model.config import ModelConfig, MoEConfig  # noqa: E402
from sparsecod.model.flops import flops_per_token  # noqa: E402
from sparsecod.train.memory_plan import block_activation_bytes, plan_memory  # noqa: E402

RESULTS: dict[str, str] = {}


def report(name: str, status: str, **detail) -> None:
    parts = [status, *(f"{k}:{_fmt(v)}" for k, v in detail.items())]
    RESULTS[name] = ";".join(parts)
    print(f"{name}={RESULTS[name]}", flush=True)


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v).replace(" ", "_").replace("=", ":")[:160]


def guarded(name: str):
    """Run a check; an unexpected exception is reported as `fail` with its message, never a traceback."""
    def wrap(fn):
        def run(*args, **kwargs):
            try:
                fn(*args, **kwargs)
            except Exception as err:  # noqa: BLE001 - every failure becomes one line
                traceback.print_exc(file=sys.stderr)
                report(name, "fail", error=f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}")
        return run
    return wrap


# --- SDPA backends -----------------------------------------------------------------------------------------
@guarded("sdpa")
def check_sdpa(device: str, cpu: bool) -> None:
    from torch.nn.attention import SDPBackend, sdpa_kernel

    backends = {"flash": SDPBackend.FLASH_ATTENTION, "mem_efficient": SDPBackend.EFFICIENT_ATTENTION,
                "cudnn": SDPBackend.CUDNN_ATTENTION}
    B, H, T = (1, 16, 64) if cpu else (2, 16, 2048)
    dtype = torch.float32 if cpu else torch.bfloat16
    tol = 1e-4 if cpu else 3e-2
    for hd in (64, 96, 128, 70):
        for G in (1, 4, 16):
            torch.manual_seed(0)
            q = torch.randn(B, H, T, hd, device=device)
            k = torch.randn(B, H // G, T, hd, device=device)
            v = torch.randn(B, H // G, T, hd, device=device)
            go = torch.randn(B, H, T, hd, device=device)
            ref_in = [t.clone().requires_grad_() for t in (q, k, v)]
            with sdpa_kernel(SDPBackend.MATH):
                ref = F.scaled_dot_product_attention(*ref_in, is_causal=True, enable_gqa=G > 1)
            ref.backward(go)
            for name, backend in backends.items():
                check = f"sdpa_{name}_hd{hd}_g{G}"
                if cpu and name != "flash":
                    report(check, "skipped", reason="CUDA-only backend")
                    continue
                inputs = [t.to(dtype).clone().requires_grad_() for t in (q, k, v)]
                try:
                    with sdpa_kernel(backend):
                        out = F.scaled_dot_product_attention(*inputs, is_causal=True, enable_gqa=G > 1)
                        out.backward(go.to(dtype))
                except RuntimeError as err:
                    report(check, "unsupported", reason=str(err).splitlines()[0][:100])
                    continue
                errs = [(out.float() - ref).abs().max().item()]
                errs += [(a.grad.float() - b.grad).abs().max().item() / max(b.grad.abs().max().item(), 1e-6)
                         for a, b in zip(inputs, ref_in)]
                report(check, "ok" if max(errs) <= tol * 10 else "fail", out_err=errs[0], grad_rel_err=max(errs[1:]))


# --- grouped_mm ----------------------------------------------------------------------------------------------
@guarded("grouped_mm")
def check_grouped_mm(device: str, cpu: bool) -> None:
    from sparsecod.model.moe import Experts

    E, d, h = (8, 64, 64) if cpu else (64, 2048, 2048)
    torch.manual_seed(0)
    experts = Experts(E, d, h).to(device)
    for p in experts.parameters():
        torch.nn.init.normal_(p, std=0.02)
    counts = torch.randint(0, 40 if cpu else 600, (E,), device=device)
    counts[::3] = 0  # empty experts
    x = torch.randn(int(counts.sum()), d, device=device)
    outs, grads = [], []
    for impl in ("grouped_mm", "loop"):
        xi = x.clone().requires_grad_()
        experts.zero_grad(set_to_none=True)
        with torch.autocast(device, dtype=torch.bfloat16):
            y = experts(xi, counts, impl=impl)
        y.float().square().mean().backward()
        outs.append(y.float())
        grads.append([xi.grad.float(), *(p.grad.float() for p in experts.parameters())])
    out_err = ((outs[0] - outs[1]).abs().max() / outs[1].abs().max().clamp_min(1e-9)).item()
    grad_err = max(((a - b).abs().max() / b.abs().max().clamp_min(1e-9)).item() for a, b in zip(*grads))
    report("grouped_mm", "ok" if max(out_err, grad_err) < 2e-2 else "fail", out_rel_err=out_err,
           grad_rel_err=grad_err, empty_experts=int((counts == 0).sum()))


# --- a training step ---------------------------------------------------------------------------------------
def _dense_1b(cpu: bool) -> tuple[ModelConfig, TrainConfig]:
    """Dense-1B (depth-L16 shapes, V=50280) at T=4096, micro-batch 2 on CUDA; a tiny dense model on CPU."""
    if cpu:
        model = ModelConfig(n_layers=4, d_model=256, n_heads=4, n_kv_heads=4, d_ff=1024, vocab_size=2048)
        train = dict(seq_len=512, micro_batch=4, precision="32-true", accelerator="cpu")
    else:
        model = ModelConfig(n_layers=16, d_model=2048, n_heads=16, n_kv_heads=16, d_ff=8192, norm_eps=1e-6)
        train = dict(seq_len=4096, micro_batch=2, precision="bf16-mixed", accelerator="gpu")
    return model, TrainConfig(global_batch=2 * train["micro_batch"], steps=10, warmup_steps=0, var_every=0, **train)


def _step_fn(model, opt, idx, device: str, cfg: TrainConfig):
    autocast = torch.autocast(device, dtype=torch.bfloat16, enabled=cfg.precision == "bf16-mixed")

    def step():
        losses = []
        for a in range(idx.shape[0]):
            with autocast:
                out = model(idx[a], idx[a], return_logits=False)
            (out.loss / idx.shape[0]).backward()
            losses.append(out.ce_loss.detach())
        opt.step()
        opt.zero_grad(set_to_none=True)
        return torch.stack(losses).mean()
    return step


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _build(model_cfg: ModelConfig, cfg: TrainConfig, device: str):
    from sparsecod.model.transformer import Transformer
    from sparsecod.train.optim import build_optimizer

    torch.manual_seed(0)
    model = Transformer(model_cfg).to(device)
    opt, _ = build_optimizer(model, cfg)
    idx = torch.randint(0, model_cfg.vocab_size, (cfg.grad_accum, cfg.micro_batch, cfg.seq_len), device=device)
    return model, opt, idx


@guarded("sync_debug")
def check_sync_debug(device: str, cpu: bool) -> None:
    if cpu:
        report("sync_debug", "skipped", reason="no device-host syncs on CPU")
        return
    model_cfg = ModelConfig(n_layers=2, d_model=512, n_heads=8, n_kv_heads=8, d_ff=0,
                            moe=MoEConfig(n_experts=8, top_k=2, d_expert=512))
    cfg = TrainConfig(seq_len=1024, micro_batch=2, global_batch=4, steps=10, warmup_steps=0, precision="bf16-mixed")
    model, opt, idx = _build(model_cfg, cfg, device)
    step = _step_fn(model, opt, idx, device, cfg)
    step()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            step()
            _sync(device)
        finally:
            torch.cuda.set_sync_debug_mode(0)
    syncs = [w for w in caught if "synchroniz" in str(w.message).lower()]
    where = sorted({Path(w.filename).name + ":" + str(w.lineno) for w in syncs})
    report("sync_debug", "ok", syncs=len(syncs), at=",".join(where[:6]) or "none")


def _probe_rss(spec: dict) -> int:
    """Peak RSS growth of two steps in a fresh process (CPU memory check; see tests/test_memory_plan.py)."""
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "65536", "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, __file__, "--probe", json.dumps(spec)], capture_output=True, text=True,
                         env=env, timeout=600, check=True).stdout
    return int(json.loads(out.strip().splitlines()[-1])["delta"])


def _hwm() -> int:
    """Peak RSS of this process image (VmHWM; unlike ru_maxrss it starts afresh at exec, not at the parent's size)."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))


def _probe_main(spec: dict) -> None:
    model_cfg, cfg = ModelConfig(**spec["model"]), TrainConfig(**spec["train"])
    torch.set_num_threads(1)
    with open("/proc/self/statm") as f:
        base = int(f.read().split()[1]) * resource.getpagesize()
    model, opt, idx = _build(model_cfg, cfg, "cpu")
    step = _step_fn(model, opt, idx, "cpu", cfg)
    step()
    step()
    print(json.dumps({"delta": _hwm() - base}))


def check_dense_step(device: str, cpu: bool, peak_flops: float, steps: int) -> None:
    model_cfg, cfg = _dense_1b(cpu)
    plan = plan_memory("dense-1b", model_cfg, cfg)
    fpt = flops_per_token(model_cfg, cfg.seq_len)
    tokens = cfg.global_batch * cfg.seq_len

    @guarded("dense1b_init_loss")
    def init_and_memory():
        model, opt, idx = _build(model_cfg, cfg, device)
        step = _step_fn(model, opt, idx, device, cfg)
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        loss = float(step())
        ln_v = math.log(model_cfg.padded_vocab)
        report("dense1b_init_loss", "ok" if abs(loss - ln_v) < 0.05 * ln_v else "fail", loss=loss, ln_V=ln_v)
        if device == "cuda":
            step()
            _sync(device)
            measured = torch.cuda.max_memory_allocated()
            tol = 0.15
        else:
            spec = {"model": dict(model_cfg.to_dict(), moe=None),
                    "train": {k: getattr(cfg, k) for k in ("seq_len", "micro_batch", "global_batch", "steps",
                                                           "warmup_steps", "precision", "var_every", "accelerator")}}
            measured = min(_probe_rss(spec) for _ in range(2))  # RSS noise (allocator retention) only adds
            tol = 0.20
        want = plan.state_bytes + plan.activation_bytes
        ratio = want / measured
        report("dense1b_peak_memory", "ok" if abs(ratio - 1) <= tol else "fail", measured_gib=measured / 2**30,
               plan_gib=want / 2**30, plan_over_measured=ratio)
        del model, opt

    init_and_memory()
    for mode in ("eager", "compiled"):
        @guarded(f"dense1b_{mode}")
        def throughput():
            model, opt, idx = _build(model_cfg, cfg, device)
            if mode == "compiled":
                model.forward = torch.compile(model.forward)
            step = _step_fn(model, opt, idx, device, cfg)
            for _ in range(2):  # warm-up (compilation)
                step()
            _sync(device)
            t0 = time.perf_counter()
            for _ in range(steps):
                step()
            _sync(device)
            tps = steps * tokens / (time.perf_counter() - t0)
            report(f"dense1b_{mode}", "ok", tokens_per_s=tps, mfu=tps * fpt / peak_flops)
        throughput()


# --- one block of each large model ---------------------------------------------------------------------------
def _tiny(model: ModelConfig) -> ModelConfig:
    """The same structure at 1/16 of the width: heads, KV heads, experts and top-k kept, head dim 8."""
    scale = model.d_model / (8 * model.n_heads)
    moe = None
    if model.moe is not None:
        m = model.moe
        moe = MoEConfig(m.n_experts, m.top_k, max(8, int(m.d_expert / scale) // 8 * 8),
                        int(m.d_shared / scale) // 8 * 8 if m.d_shared else 0)
    return model.replace(n_layers=1, d_model=8 * model.n_heads, d_ff=max(8, int(model.d_ff / scale)) if model.d_ff else 0,
                         moe=moe, vocab_size=256)


def check_blocks(device: str, cpu: bool) -> None:
    from sparsecod.model.transformer import Block

    reg = load_registry(ROOT / "config" / "config.yaml")
    largest: dict[str, tuple] = {}
    for run_id, spec in reg.runs.items():
        p = plan_memory(run_id, spec.model, spec.train)
        name = spec.model.name
        if name not in largest or p.total_bytes > largest[name][0]:
            largest[name] = (p.total_bytes, run_id, spec)
    for name, (_, run_id, spec) in sorted(largest.items()):
        check = f"block_{name.replace('-', '_').lower()}"

        @guarded(check)
        def one():
            model_cfg = _tiny(spec.model) if cpu else spec.model
            T, mb = (64, 2) if cpu else (spec.train.seq_len, spec.train.micro_batch)
            precision = "32-true" if cpu else spec.train.precision
            cfg = TrainConfig(seq_len=T, micro_batch=mb, global_batch=mb, steps=2, warmup_steps=0, var_every=0,
                              precision=precision)
            want = block_activation_bytes(model_cfg, cfg) * mb * T
            torch.manual_seed(0)
            block = Block(model_cfg).to(device)
            for p in block.parameters():
                torch.nn.init.normal_(p, std=0.02)
            from sparsecod.model.attention import RotaryEmbedding
            from sparsecod.model.transformer import ForwardContext

            cos, sin = RotaryEmbedding(model_cfg.head_dim, model_cfg.rope_theta)(T, torch.device(device))
            x = torch.randn(mb, T, model_cfg.d_model, device=device, requires_grad=True)
            ctx = ForwardContext(cos=cos, sin=sin)
            autocast = torch.autocast(device, dtype=torch.bfloat16, enabled=precision == "bf16-mixed")
            params = {p.untyped_storage().data_ptr() for p in block.parameters()}
            saved: dict[int, int] = {}

            def pack(t):
                s = t.untyped_storage()
                if s.data_ptr() not in params and s.data_ptr() != x.untyped_storage().data_ptr():
                    saved[s.data_ptr()] = s.nbytes()
                return t

            if device == "cuda":
                _sync(device)
                before = torch.cuda.memory_allocated()
            with autocast, torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
                y = block(x, ctx)
            if device == "cuda":  # kept after the forward, less the output (the next block's input)
                _sync(device)
                measured = torch.cuda.memory_allocated() - before - y.untyped_storage().nbytes()
            else:
                measured = sum(saved.values())
            y.float().square().mean().backward()
            measured += x.untyped_storage().nbytes()  # the plan counts the block's input (kept by its first norm)
            ratio = want / measured
            tol = 0.20 if cpu else 0.15
            report(check, "ok" if abs(ratio - 1) <= tol else "fail", run=run_id, T=T, micro_batch=mb,
                   measured_mib=measured / 2**20, plan_mib=want / 2**20, plan_over_measured=ratio)
        one()


# --- sharded step, checkpoint save/load ------------------------------------------------------------------------
@guarded("sharded_step")
def check_sharded(device: str, cpu: bool) -> None:
    from sparsecod.train import run as train_run_module

    src = Path(train_run_module.__file__).read_text()
    if "fsdp2" not in src:
        report("sharded_step", "skipped", reason="strategy_fsdp2_is_not_in_sparsecod.train_on_this_branch")
        return
    sys.path.insert(0, str(ROOT / "tests"))
    from _train_testutil import make_shard, tiny_run

    with tempfile.TemporaryDirectory() as tmp:
        shard = make_shard(Path(tmp) / "shard")
        # CPU: two gloo processes (a real shard of each tensor); CUDA: the one GPU of this check
        run = tiny_run(shard, "dense", steps=2, strategy="fsdp2", devices=2 if cpu else 1, micro_batch=2,
                       ckpt_every=2, accelerator="cpu" if cpu else "gpu", precision="32-true" if cpu else "bf16-mixed")
        run.save(Path(tmp) / "run.yaml")
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
        cmd = [sys.executable, "-m", "sparsecod", "train", "--config", str(Path(tmp) / "run.yaml"),
               "--out", str(Path(tmp) / "r"), "--no-progress"]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT,
                              env={**env, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"})
        if proc.returncode != 0:
            report("sharded_step", "fail", error=(proc.stderr.strip().splitlines() or ["?"])[-1])
            return
        summary = json.loads((Path(tmp) / "r" / "summary.json").read_text())
        report("sharded_step", "ok" if summary["steps_done"] == 2 else "fail", seconds=time.perf_counter() - t0,
               world_size=summary["world_size"], final_loss=summary["final_train_loss"])


@guarded("ckpt_save_s")
def check_checkpoint(device: str, cpu: bool) -> None:
    from sparsecod.model.io import load_model, save_model
    from sparsecod.model.transformer import Transformer

    model_cfg = _dense_1b(cpu)[0]
    torch.manual_seed(0)
    model = Transformer(model_cfg).to(device)
    n = sum(p.numel() for p in model.parameters())
    with tempfile.TemporaryDirectory(dir=os.environ.get("SPARSECOD_CHECK_TMP")) as tmp:
        t0 = time.perf_counter()
        save_model(model, Path(tmp) / "model")
        saved = time.perf_counter() - t0
        t0 = time.perf_counter()
        loaded = load_model(Path(tmp) / "model", device=device)
        _sync(device)
        load = time.perf_counter() - t0
        same = all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))
    report("ckpt_save_s", "ok" if same else "fail", seconds=saved, params=n)
    report("ckpt_load_s", "ok" if same else "fail", seconds=load, params=n)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cpu", action="store_true", help="every check at tiny shapes on CPU (CI)")
    ap.add_argument("--peak-flops", type=float, default=None,
                    help="peak FLOP/s of the device for MFU (default 9.89e14 = H100/H200 dense bf16; 1e11 with --cpu)")
    ap.add_argument("--steps", type=int, default=None, help="timed steps per throughput check (default 5; 2 on CPU)")
    ap.add_argument("--probe", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.probe:
        _probe_main(json.loads(args.probe))
        return 0
    if not args.cpu and not torch.cuda.is_available():
        print("gpu_check: error: no CUDA device; run with --cpu for the tiny CPU version", file=sys.stderr)
        return 2
    device = "cpu" if args.cpu else "cuda"
    peak = args.peak_flops or (1e11 if args.cpu else 9.89e14)
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1))) if args.cpu else None
    name = "cpu" if args.cpu else torch.cuda.get_device_name()
    print(f"# torch {torch.__version__} device {name}", flush=True)
    t0 = time.perf_counter()
    check_sdpa(device, args.cpu)
    check_grouped_mm(device, args.cpu)
    check_sync_debug(device, args.cpu)
    check_dense_step(device, args.cpu, peak, args.steps or (2 if args.cpu else 5))
    check_blocks(device, args.cpu)
    check_sharded(device, args.cpu)
    check_checkpoint(device, args.cpu)
    failed = sorted(k for k, v in RESULTS.items() if v.startswith("fail"))
    print(f"# {len(RESULTS)} checks in {time.perf_counter() - t0:.0f} s", flush=True)
    print(f"gpu_check={'fail;' + ','.join(failed) if failed else 'ok'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
