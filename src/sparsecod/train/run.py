"""`sparsecod train`: train one run end to end and write its run directory (DESIGN.md).

Layout of `<run_dir>/`:
    checkpoints/last.ckpt         Lightning checkpoint every ckpt_every steps and at the end (resume state;
                                  not a workflow output, so it survives failed jobs); under train.strategy=fsdp2 a
                                  symlink to a sharded torch.distributed.checkpoint directory (checkpoint_io.py)
    checkpoints/hpc_ckpt_*.ckpt   Lightning's SLURM auto-requeue checkpoints, written on SIGURG (_cluster_plugins;
                                  removed once the final last.ckpt exists)
    (every checkpoint is written atomically by checkpoint_io.AtomicCheckpointIO, Lightning's CheckpointIO plugin)
    checkpoints/fingerprint.json  the configuration the checkpoints belong to
    log_parts/<log>/part-*.parquet  append-only log parts (see logs.py)
    train_log.parquet             per step: step, loss, ce, aux, lr, grad_norm, tokens, train_seconds
    variance_log.parquet          per step and block: out_var, attn_out_var, ffn_out_var, var_pre, var_post (M1/M2, D3)
    kurtosis_log.parquet          per step and block: kurtosis, kurt_p50/p90/p99/max (M10)
    val_log.parquet               held-out loss: step (updates done), val_loss, val_targets
    logs/{csv,tensorboard,wandb}/ Lightning loggers named in train.loggers (per-step loss, lr, tokens/s, MFU)
    model/                        `sparsecod.model.save_model` directory (+ tokenizer.json of the shard)
    summary.json                  written last, atomically

Rerunning the same command resumes from the newest readable checkpoint (also after a Slurm
requeue); a resumed run produces the same weights and logs as an uninterrupted one. A diverging run stops
cleanly, keeps its last finite weights and logs, and exits normally with `diverged: true`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..config import SHARDED_STRATEGY, RunConfig, TrainConfig
from ..fileio import write_json_atomic
from ..config.errors import ConfigError
from ..model.io import save_model
from .checkpoint_io import META_FILE, AtomicCheckpointIO, checkpoint_step
from .logs import LOG_NAMES, consolidate, read_log

# train keys that may change between a checkpoint and its resume (hardware, logging, early stop)
_RESUMABLE_KEYS = {
    "stop_after", "micro_batch", "devices", "num_nodes", "strategy", "accelerator", "ckpt_every",
    "var_every", "kurtosis_every", "val_every", "val_tokens", "compile", "max_loss",
    "act_ckpt", "loggers", "loader_workers",
}
_NOISE = (  # Lightning warnings that do not apply to this trainer
    r".*Using ModelCheckpoint with manual optimization.*",  # our update happens in training_step on purpose
    r".*LeafSpec.*",  # deprecation inside lightning/_pytree.py
    r".*`srun` command is available on your system.*",  # local runs on a machine with Slurm installed
    r".*sync_dist=True.*",  # val_loss is already all-reduced
    r".*resuming from a checkpoint that ended before the epoch ended.*",  # batches are chosen by step
    r".*does not have many workers.*",  # memmap windows need no loader workers
)

log = logging.getLogger("sparsecod.train")


class DivergenceWarning(UserWarning):
    """A run stopped early because its loss or gradient became non-finite or exceeded train.max_loss."""


def _fingerprint(run: RunConfig) -> dict:
    """What a checkpoint must agree on with the config that resumes it."""
    train = {k: v for k, v in dataclasses.asdict(run.train).items() if k not in _RESUMABLE_KEYS}
    model = run.model.to_dict()
    model.pop("name", None)
    return {"model": model, "train": train}


def _loadable(path: Path) -> bool:
    """True if `path` opens as a torch checkpoint (a file cut short by a kill does not)."""
    if path.is_dir():  # sharded checkpoint (a symlink to its directory); meta.pt is written after every shard
        return (path / META_FILE).is_file()
    try:
        torch.load(path, map_location="cpu", mmap=True, weights_only=False)
        return True
    except Exception:  # noqa: BLE001 - any failure means "cannot resume from this file"
        return False


def pick_checkpoint(ckpt_dir: Path) -> Path | None:
    """The newest loadable of `last.ckpt` and Lightning's SLURM requeue checkpoints `hpc_ckpt_*.ckpt`.

    An unreadable `hpc_ckpt_*` file is deleted: under Slurm, Lightning loads the highest-numbered one by itself
    whenever fit/validate get no checkpoint path, and would fail on it on every rerun.
    """
    candidates = [p for p in [ckpt_dir / "last.ckpt", *ckpt_dir.glob("hpc_ckpt_*.ckpt")] if p.exists()]
    for path in sorted(candidates, key=lambda p: p.stat().st_mtime_ns, reverse=True):
        if _loadable(path):
            return path
        warnings.warn(f"checkpoint {path} cannot be read (interrupted write?); ignoring it", stacklevel=2)
        if path.name.startswith("hpc_ckpt_"):
            AtomicCheckpointIO().remove_checkpoint(path)
    return None


def _remove_hpc_checkpoints(ckpt_dir: Path, io: AtomicCheckpointIO) -> None:
    for stale in ckpt_dir.glob("hpc_ckpt_*.ckpt"):
        io.remove_checkpoint(stale)


def _cluster_plugins(requeue_signal, devices: int = 1, num_nodes: int = 1) -> list:
    """Under Slurm: Lightning's SLURMEnvironment with `requeue_signal` (SIGURG) as its checkpoint-and-requeue signal.

    Lightning picks SLURMEnvironment by itself under the same condition (`detect()`), but with SIGUSR1: sent with
    `sbatch --signal=USR1@<s>` to the whole job step, that signal kills the Snakemake jobstep wrapper. On it the
    handler saves checkpoints/hpc_ckpt_<n>.ckpt and runs `scontrol requeue $SLURM_JOB_ID`; the restarted job
    runs the same command, which resumes from that checkpoint (pick_checkpoint).

    One Slurm task asking for several devices on one node (the Snakemake Slurm plugin runs every job as
    `srun -n1`): SLURMEnvironment would make that a world of one process and leave the other GPUs idle, so
    Lightning's own launcher starts one process per device instead. Every multi-process run leaves the signal to
    `requeue.SyncedRequeue` (all ranks checkpoint at the same step; Lightning's handler would race), so Lightning's
    own requeue handler is only installed for a single process.
    """
    from lightning.fabric.plugins.environments import LightningEnvironment, SLURMEnvironment

    if requeue_signal is None or not SLURMEnvironment.detect():
        return []
    if num_nodes == 1 and devices > 1 and int(os.environ.get("SLURM_NTASKS", "1")) == 1:
        return [LightningEnvironment()]
    return [SLURMEnvironment(auto_requeue=devices * num_nodes == 1, requeue_signal=requeue_signal)]


def _check_resume(run: RunConfig, ckpt_dir: Path) -> Path | None:
    """Checkpoint to resume from, or None; raises if the checkpoints were written for a different config."""
    fp_path = ckpt_dir / "fingerprint.json"
    resume = pick_checkpoint(ckpt_dir)
    if resume is None:
        return None
    want = _fingerprint(run)
    have = json.loads(fp_path.read_text()) if fp_path.is_file() else None
    if have != want:
        diff = sorted(
            f"{sec}.{k}" for sec in want for k in set(want[sec]) | set((have or {}).get(sec, {}))
            if want[sec].get(k) != (have or {}).get(sec, {}).get(k)
        )
        raise ConfigError(
            f"{resume} was written for a different configuration (differs in {diff}); "
            f"delete {ckpt_dir} to start this run from scratch"
        )
    if resume.is_dir() != (run.train.strategy == SHARDED_STRATEGY):  # Lightning loads only its own layout
        layout = f"sharded by train.strategy={SHARDED_STRATEGY}" if resume.is_dir() else "as one file (not sharded)"
        fix = SHARDED_STRATEGY if resume.is_dir() else "ddp (or auto)"
        raise ConfigError(
            f"{resume} was written {layout}, train.strategy={run.train.strategy} cannot resume it: "
            f"set train.strategy: {fix} to finish this run, or delete {ckpt_dir} to start it from scratch"
        )
    return resume


def resolve_precision(cfg: TrainConfig) -> str:
    """cfg.precision, or "32-true" with a warning where bf16 is not supported on the accelerator."""
    if not cfg.precision.startswith("bf16"):
        return cfg.precision
    cuda = cfg.accelerator in ("gpu", "cuda") or (cfg.accelerator == "auto" and torch.cuda.is_available())
    if cuda:
        ok = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    else:
        try:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                ok = (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
        except (RuntimeError, TypeError):
            ok = False
    if not ok:
        warnings.warn(f"train.precision={cfg.precision} is not supported on this accelerator; using 32-true", stacklevel=2)
        return "32-true"
    return cfg.precision


def train_run(
    run: RunConfig | str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    progress_bar: bool = False,
    callbacks: Sequence[Any] = (),
    peak_flops: float | None = None,
) -> dict | None:
    """Train `run` (a RunConfig or a run.yaml path) into `out_dir`; returns the summary (None on ranks > 0).

    `progress_bar`: a progress bar on a terminal, plain progress lines otherwise (Snakemake/Slurm logs).
    `callbacks` are extra Lightning callbacks (tests use them to interrupt a run). `peak_flops`: peak FLOP/s of
    one device, for the MFU in the progress output and summary.json (default: run.meta["peak_flops"], which the
    registry takes from resources.gpu_peak_flops; None: not computed).
    """
    if not isinstance(run, RunConfig):
        run = RunConfig.load(run)
    out = Path(out_dir).resolve()
    ckpt_dir = out / "checkpoints"
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    shard_dir = Path(run.data)
    if not shard_dir.is_dir():
        raise FileNotFoundError(f"data={run.data!r} of run {run.run_id} is not a directory: tokenize the shards first")

    logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)  # tips, "GPU available"
    logging.getLogger("lightning.fabric.utilities.rank_zero").setLevel(logging.WARNING)
    with warnings.catch_warnings():
        for pattern in _NOISE:
            warnings.filterwarnings("ignore", message=pattern)
        return _train(run, out, ckpt_dir, shard_dir, progress_bar, callbacks, peak_flops)


def _train(run: RunConfig, out: Path, ckpt_dir: Path, shard_dir: Path, progress_bar: bool, callbacks,
           peak_flops: float | None = None) -> dict | None:
    import lightning as L
    from lightning.pytorch.callbacks import TQDMProgressBar

    from ..model.flops import flops_per_token
    from .callbacks import AtomicCheckpoint, ProgressLines, RunLogs
    from .loggers import extra_loggers
    from .module import REQUEUE_SIGNAL, LMTrainModule, ShardData
    from .parallel import build_strategy, compile_blocks, full_model, resolve_compile
    from .requeue import requeue_callbacks

    cfg = run.train
    resume = _check_resume(run, ckpt_dir)
    precision = resolve_precision(cfg)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    data = ShardData(shard_dir, cfg)
    module = LMTrainModule(run)
    peak_flops = peak_flops or run.meta.get("peak_flops")  # else resources.gpu_peak_flops of the workflow config
    logs = RunLogs(out, cfg.tokens_per_step, flops_per_token(run.model, cfg.seq_len), peak_flops)
    ckpt_io = AtomicCheckpointIO()
    every = max(1, min(50, cfg.last_step // 100))
    tty = progress_bar and sys.stderr.isatty()  # no terminal: plain lines, never progress-bar redraws in a log file
    bar = [TQDMProgressBar(refresh_rate=every)] if tty else []
    lines = [ProgressLines(logs, every, cfg.last_step)] if progress_bar and not tty else []
    trainer = L.Trainer(
        accelerator=cfg.accelerator, devices=cfg.devices, num_nodes=cfg.num_nodes,
        strategy=build_strategy(cfg, precision),
        precision=precision, max_steps=cfg.last_step, max_epochs=-1,
        logger=[logs.parquet, *extra_loggers(cfg.loggers, out, run.run_id)],
        callbacks=[logs, AtomicCheckpoint(ckpt_dir, cfg.ckpt_every), *bar, *lines, *callbacks,
                   *requeue_callbacks(ckpt_dir, REQUEUE_SIGNAL, cfg.devices * cfg.num_nodes)],
        enable_model_summary=False, enable_progress_bar=tty, use_distributed_sampler=False,
        num_sanity_val_steps=0, val_check_interval=cfg.val_every or None, check_val_every_n_epoch=None,
        limit_val_batches=1.0 if cfg.val_every else 0, default_root_dir=str(ckpt_dir), log_every_n_steps=1,
        plugins=[ckpt_io, *_cluster_plugins(REQUEUE_SIGNAL, cfg.devices, cfg.num_nodes)],
    )
    if resolve_compile(cfg.compile, trainer.strategy.root_device.type):
        compile_blocks(module.model)
    if trainer.is_global_zero:
        n = len(data.train_windows)
        log.info("train split: %d windows of %d tokens; %d steps x %d = %.3g epochs", n, cfg.seq_len, cfg.last_step,
                 cfg.global_batch, cfg.last_step * cfg.global_batch / n)
        if data.heldout_windows is not None and len(data.heldout_windows) < cfg.val_tokens // cfg.seq_len:
            warnings.warn(f"train.val_tokens={cfg.val_tokens} asks for more than the {len(data.heldout_windows)} "
                          f"held-out windows of {shard_dir}; using all of them", stacklevel=2)
        if resume is None:
            write_json_atomic(ckpt_dir / "fingerprint.json", _fingerprint(run), sort_keys=False, allow_nan=False)
        log.info("run %s: %s", run.run_id,
                 f"resuming from {resume} (step {checkpoint_step(resume)})" if resume else "starting from scratch")
    trainer.fit(module, datamodule=data, ckpt_path=str(resume) if resume else None)
    steps_done = trainer.global_step
    if module.diverged is not None and trainer.is_global_zero:
        d = module.diverged
        warnings.warn(
            f"run {run.run_id} diverged at step {d['step']}: {d['reason']}; stopped there and kept the last finite "
            "weights (summary.json has diverged: true)", DivergenceWarning, stacklevel=1,
        )
    # final checkpoint, so rerunning after a crash below (or a finished run) does no training
    last = ckpt_dir / "last.ckpt"
    if steps_done > 0 and trainer.strategy.broadcast(ckpt_io.saved_step(last) != steps_done):  # rank 0 knows
        trainer.save_checkpoint(last, weights_only=False)
    # Lightning's requeue checkpoints are superseded by last.ckpt now. Remove them before validate(): under Slurm,
    # validate() without ckpt_path loads the newest hpc_ckpt_*.ckpt (Lightning's auto-resume), which would put the
    # weights of the requeue point back into the model that is validated and saved.
    if trainer.is_global_zero:
        _remove_hpc_checkpoints(ckpt_dir, ckpt_io)
    trainer.strategy.barrier("remove_hpc_checkpoints")
    if cfg.val_tokens and module.last_val_step != steps_done:  # final held-out loss
        trainer.limit_val_batches = 1.0
        trainer.validate(module, datamodule=data, verbose=False)
        logs.flush(trainer, module)

    model = full_model(trainer, module.model)
    if not trainer.is_global_zero:
        return None
    return _write_outputs(run, out, shard_dir, model, module, logs, precision, trainer.world_size, steps_done)


def _write_outputs(run, out: Path, shard_dir: Path, model, module, logs, precision: str, world: int, steps_done: int) -> dict:
    """model/, consolidated logs, then summary.json (last, atomic)."""
    cfg = run.train
    diverged = module.diverged
    tokenizer = shard_dir / "tokenizer.json"
    save_model(
        model, out / "model", extra={"run_id": run.run_id, "steps_done": steps_done, "diverged": diverged is not None},
        tokenizer_file=tokenizer if tokenizer.is_file() else None,
    )
    last_logged = diverged["step"] if diverged else steps_done - 1
    for name in LOG_NAMES:
        consolidate(out, name, last_logged if name != "val_log" else steps_done)
    train_log = read_log(out, "train_log")
    done = train_log[train_log["step"] < steps_done]
    val = read_log(out, "val_log")

    def finite(x: float) -> float | None:
        return float(x) if x is not None and math.isfinite(x) else None

    tokens = steps_done * cfg.tokens_per_step
    summary = {
        "run_id": run.run_id,
        "status": "diverged" if diverged else "completed",
        "steps": cfg.steps,
        "target_steps": cfg.last_step,
        "steps_done": steps_done,
        "tokens": tokens,
        "final_train_loss": finite(done["loss"].iloc[-1]) if len(done) else None,
        "final_train_ce": finite(done["ce"].iloc[-1]) if len(done) else None,
        "final_val_loss": finite(val["val_loss"].iloc[-1]) if len(val) else None,
        "final_val_step": int(val["step"].iloc[-1]) if len(val) else None,
        "wall_time_s": logs.train_seconds,
        "tokens_per_s": tokens / logs.train_seconds if logs.train_seconds > 0 else None,
        "flops_per_token": logs.flops_per_token,  # 6·N_active + 12·L·d·T (sparsecod.model.flops)
        "peak_flops": logs.peak_flops,
        "mfu": logs.mfu(tokens / logs.train_seconds, world) if logs.train_seconds > 0 else None,
        "diverged": diverged is not None,
        "diverged_step": diverged["step"] if diverged else None,
        "diverged_loss": diverged["loss"] if diverged else None,
        "diverged_reason": diverged["reason"] if diverged else None,
        "params": run.model.param_counts(),
        "precision": precision,
        "world_size": world,
        "config": run.to_dict(),
    }
    write_json_atomic(out / "summary.json", summary, sort_keys=False, allow_nan=False)
    log.info(
        "run %s %s: %d steps, %d tokens, train loss %s, val loss %s, %.0f tokens/s -> %s", run.run_id, summary["status"],
        steps_done, tokens, summary["final_train_loss"], summary["final_val_loss"], summary["tokens_per_s"] or 0, out,
    )
    return summary
