"""The memory plan (issue 16): state bytes by hand, activations against real CPU steps, the paper config fits,
`sparsecod plan` and the planning-time check of the workflow."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sparsecod.cli import main as cli_main
from sparsecod.config import TrainConfig
from sparsecod.experiments import load_registry
from sparsecod.model.config import CE_CHUNK_TOKENS, ModelConfig, MoEConfig
from sparsecod.train.memory_plan import GIB, block_params, memory_problems, plan_memory, plan_registry

ROOT = Path(__file__).resolve().parents[1]
DENSE = ModelConfig(n_layers=2, d_model=64, n_heads=4, n_kv_heads=4, d_ff=128, vocab_size=256, pad_vocab_to=128)


def _train(**kw) -> TrainConfig:
    base = dict(seq_len=32, global_batch=16, micro_batch=2, steps=10, warmup_steps=0, accelerator="gpu",
                precision="bf16-mixed", var_every=0)
    return TrainConfig(**{**base, **kw})


def test_state_bytes_by_hand():
    # per block: qkv 64·192 + out 64·64 + SwiGLU 3·64·128 + two gains 2·64; embedding and head 256·64 each
    blk = 64 * 192 + 64 * 64 + 3 * 64 * 128 + 2 * 64
    n = 2 * blk + 2 * 256 * 64 + 64
    assert block_params(DENSE) == blk and DENSE.param_counts()["total"] == n
    one = plan_memory("x", DENSE, _train(devices=1, strategy="auto", accelerator="cpu"))
    assert one.state_bytes == 16 * n and one.reserved_bytes == 0  # fp32 weights, grads, AdamW m and v
    ddp = plan_memory("x", DENSE, _train(devices=4, strategy="ddp"))
    assert ddp.state_bytes == 20 * n  # + DDP's gradient bucket
    fsdp = plan_memory("x", DENSE, _train(devices=4, strategy="fsdp2"))
    assert fsdp.state_bytes == 16 * n / 4 + 8 * (2 * 256 * 64 + 64 + 2 * blk)  # shards + unsharded root, 2 blocks
    true16 = plan_memory("x", DENSE, _train(devices=1, strategy="auto", precision="bf16-true"))
    assert true16.state_bytes == 8 * n


def test_activations_scale_with_tokens_and_checkpointing_and_sharding_halves_states():
    cfg = ModelConfig(n_layers=16, d_model=2048, n_heads=16, n_kv_heads=16, d_ff=8192)
    a = plan_memory("x", cfg, _train(seq_len=1024, micro_batch=4, global_batch=256, devices=4))
    b = plan_memory("x", cfg, _train(seq_len=1024, micro_batch=2, global_batch=256, devices=4))
    c = plan_memory("x", cfg, _train(seq_len=1024, micro_batch=4, global_batch=256, devices=4, act_ckpt=True))
    assert b.activation_bytes == pytest.approx(a.activation_bytes / 2)
    assert c.activation_bytes < 0.5 * a.activation_bytes
    d = plan_memory("x", cfg, _train(seq_len=1024, micro_batch=4, global_batch=256, devices=8, strategy="fsdp2"))
    assert d.state_bytes < 0.25 * a.state_bytes  # 16 B/param over 8 ranks + the unsharded working set


CASES = {  # (model, train): two dense sizes, fp32, two micro-batches per step
    "dense-d256": (dict(n_layers=4, d_model=256, n_heads=4, n_kv_heads=4, d_ff=1024, vocab_size=2048),
                   dict(seq_len=512, micro_batch=4)),
    "gqa-d384": (dict(n_layers=2, d_model=384, n_heads=6, n_kv_heads=2, d_ff=768, vocab_size=4096),
                 dict(seq_len=256, micro_batch=4)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_plan_matches_the_measured_peak_of_real_cpu_steps(case):
    """Peak RSS (VmHWM) growth of two real optimizer steps (fresh process) within ±20 % of the plan."""
    model_kw, train_kw = CASES[case]
    train_kw = dict(train_kw, global_batch=2 * train_kw["micro_batch"], steps=10, warmup_steps=0,
                    precision="32-true", var_every=0, accelerator="cpu")
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "65536", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(ROOT / "tests" / "_memory_probe.py"),
                           json.dumps({"model": model_kw, "train": train_kw})],
                          capture_output=True, text=True, env=env, timeout=300, check=True)
    measured = json.loads(proc.stdout.strip().splitlines()[-1])["delta"]
    plan = plan_memory(case, ModelConfig(**model_kw), TrainConfig(**train_kw))
    assert 0.8 <= plan.total_bytes / measured <= 1.2, (plan.total_bytes / 2**20, measured / 2**20)


def test_every_paper_run_fits_80_gib():
    reg = load_registry(ROOT / "config" / "config.yaml")
    plans = plan_registry(reg)
    assert len(plans) == len(reg.runs) > 50  # every training job, LR-sweep points included
    over = {p.run_id: round(p.gib_per_gpu, 1) for p in plans if p.gib_per_gpu > 80}
    assert not over and memory_problems(reg, 80) == []
    assert {p.run_id: p.strategy for p in plans if p.strategy == "fsdp2"}.keys() >= {"moe-7BA1B", "abl-A8"}


def test_memory_problem_names_the_run_and_the_keys():
    reg = load_registry(ROOT / "config" / "config.yaml")
    lines = memory_problems(reg, 30)
    (line,) = [x for x in lines if x.startswith("run abl-A2 ")]
    assert "resources.gpu_mem_gb=30" in line and "groups.ablation.runs.abl-A2" in line and "act_ckpt" in line
    assert "\n" not in line


def test_plan_cli_csv(capsys):
    assert cli_main(["plan", "--config", str(ROOT / "config" / "config.yaml"), "--format", "csv"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "run_id,strategy,devices,micro_batch,act_ckpt,gib_per_gpu,gpu_mem_gb"
    rows = {r.split(",")[0]: r.split(",") for r in lines[1:]}
    assert rows["moe-7BA1B@lr4e-4"][1] == "fsdp2" and rows["abl-A2"][4] == "true" and rows["abl-A2"][6] == "80"


@pytest.mark.integration
def test_snakemake_dry_run_rejects_a_run_that_does_not_fit(tmp_path):
    text = (ROOT / "config" / "config.yaml").read_text()
    assert "  gpu_mem_gb: 80 " in text
    (tmp_path / "small_gpus.yaml").write_text(text.replace("  gpu_mem_gb: 80 ", "  gpu_mem_gb: 50 "))
    cmd = [str(Path(sys.executable).with_name("snakemake")), "-n", "all", "--configfile", str(tmp_path / "small_gpus.yaml")]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "needs" in out and "more than resources.gpu_mem_gb=50" in out and "Traceback" not in out, out[-2000:]



def test_a_chunked_loss_counts_one_chunk_of_logits():
    """Above CE_CHUNK_TOKENS tokens per micro-batch the loss is chunked (model.transformer): one chunk's logits."""
    cfg = ModelConfig(n_layers=2, d_model=64, n_heads=4, n_kv_heads=4, d_ff=128, vocab_size=50304)
    fp32 = dict(global_batch=64, accelerator="cpu", precision="32-true")
    per_logit = 16 * cfg.padded_vocab  # fp32: log-softmax, its gradient, exp(.) and the logits' gradient

    def act(tokens: int) -> float:
        return plan_memory("x", cfg, _train(seq_len=tokens // 2, **fp32)).activation_bytes

    below, at, above = act(CE_CHUNK_TOKENS // 2), act(CE_CHUNK_TOKENS), act(4 * CE_CHUNK_TOKENS)
    rest = (at - per_logit * CE_CHUNK_TOKENS) / CE_CHUNK_TOKENS  # bytes per token outside the loss
    assert above == pytest.approx(4 * CE_CHUNK_TOKENS * rest + per_logit * CE_CHUNK_TOKENS)
    assert below == pytest.approx(CE_CHUNK_TOKENS // 2 * (rest + per_logit))
