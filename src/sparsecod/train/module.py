"""Lightning wrappers for training one run: the LightningModule (one optimizer step per batch) and the data.

Optimization is manual so that one Lightning batch is exactly one optimizer step (protocol §1.5):
the step's micro-batches are forwarded and back-propagated in turn (loss / A each, so the gradient
is the mean over the global batch; DDP averages over ranks), the step's losses are all-reduced, a
non-finite or too-large loss stops the run *before* the update (divergence keeps the last finite
weights), gradients are clipped to global L2 norm `grad_clip`, AdamW steps and the LR schedule
advances. Variance (M1/M2) and kurtosis (M10) statistics come from the same training forward.
"""

from __future__ import annotations

import math
import signal
import threading
from contextlib import contextmanager, nullcontext
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader

from ..config import RunConfig, TrainConfig
from ..config.errors import ConfigError
from ..model.io import init_model
from ..data.shards import open_tokens
from .data import IGNORE_INDEX, HeldoutWindows, StepBatches, StepSchedule, TokenWindows
from .optim import build_optimizer
from .parallel import clip_grad_norm
from .stats import KurtosisAccumulator, VarianceAccumulator


# The signal Lightning's SLURMEnvironment treats as "checkpoint and requeue" (run.py). Not SIGUSR1: Slurm sends
# --signal to every process of the job step, and the Snakemake jobstep wrapper there dies of SIGUSR1; SIGURG is
# ignored by default, so only the training process reacts to it (docs/slurm.md).
REQUEUE_SIGNAL = getattr(signal, "SIGURG", None)
_DEFERRED = tuple(getattr(signal, n) for n in ("SIGURG", "SIGUSR1", "SIGUSR2", "SIGTERM") if hasattr(signal, n))


@contextmanager
def _signals_deferred():
    """Hold Slurm requeue/termination signals until the block ends (main thread; no-op elsewhere).

    Lightning's SLURM handler saves a checkpoint from inside the signal handler; deferring it past
    the optimizer/scheduler update keeps that checkpoint at a consistent point. The Python handlers of these
    signals are swapped for a recorder and re-raised afterwards. (A signal mask would not do: torch's threads do
    not block the signal, the kernel hands it to one of them, and Python still runs the handler in the main
    thread at once.) Signals without a Python handler keep their default action.
    """
    if not _DEFERRED or threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    saved = {}
    for signum in _DEFERRED:
        handler = signal.getsignal(signum)
        if callable(handler):
            saved[signum] = handler
            signal.signal(signum, lambda num, _frame: pending.append(num))
    try:
        yield
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)
        for signum in pending:
            signal.raise_signal(signum)


class ShardData(L.LightningDataModule):
    """Train batches per optimizer step (from the trainer's current global step) and held-out windows."""

    def __init__(self, shard_dir: str | Path, cfg: TrainConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.train_windows = TokenWindows(open_tokens(shard_dir, "train"), cfg.seq_len, name=f"{shard_dir}/train")
        self.schedule = StepSchedule(len(self.train_windows), cfg.global_batch, cfg.seed)
        self.heldout_windows = None
        if cfg.val_tokens:
            self.heldout_windows = TokenWindows(open_tokens(shard_dir, "heldout"), cfg.seq_len, name=f"{shard_dir}/heldout")

    def _world(self) -> tuple[int, int]:
        t = self.trainer
        rank, world = (t.global_rank, t.world_size) if t is not None else (0, 1)
        if self.cfg.global_batch % (world * self.cfg.micro_batch):
            raise ConfigError(
                f"train.global_batch={self.cfg.global_batch} is not a multiple of train.micro_batch × world size "
                f"= {self.cfg.micro_batch} × {world}"
            )
        return rank, world

    def train_dataloader(self) -> DataLoader:
        rank, world = self._world()
        start = self.trainer.global_step if self.trainer is not None else 0
        ds = StepBatches(self.train_windows, self.schedule, start, self.cfg.last_step, rank, world, self.cfg.micro_batch)
        workers = self.cfg.loader_workers
        return DataLoader(ds, batch_size=None, num_workers=workers, pin_memory=torch.cuda.is_available(),
                          persistent_workers=False, prefetch_factor=2 if workers else None)

    def val_dataloader(self) -> DataLoader:
        if self.heldout_windows is None:
            return []
        rank, world = self._world()
        n = self.cfg.val_tokens // self.cfg.seq_len
        ds = HeldoutWindows(self.heldout_windows, n, self.cfg.micro_batch, rank, world)
        return DataLoader(ds, batch_size=None, num_workers=0)


class LMTrainModule(L.LightningModule):
    """Wraps `sparsecod.model.Transformer` for training; collects log rows in `self.log_rows`.

    log_rows[name] receives dicts for the logs of `sparsecod.train.logs`; the run's log callback
    drains them (rank 0). `diverged` is None or {"step", "loss", "reason"} once the run diverged.
    """

    def __init__(self, run: RunConfig) -> None:
        super().__init__()
        self.run, self.cfg = run, run.train
        self.automatic_optimization = False
        self.model = init_model(run.model, self.cfg.seed)  # init (protocol §1.5: seed for init and data order)
        if self.cfg.act_ckpt:  # before parallel.py compiles / shards it (train.compile, train.strategy)
            from .act_ckpt import apply_act_ckpt

            apply_act_ckpt(self.model)
        self.log_rows: dict[str, list[dict]] = {"train_log": [], "variance_log": [], "kurtosis_log": [], "val_log": []}
        self.diverged: dict | None = None
        self.last_val_step: int | None = None
        self._val = torch.zeros(2, dtype=torch.float64)

    def configure_optimizers(self):
        opt, sched = build_optimizer(self.model, self.cfg)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # --- helpers ---------------------------------------------------------------------------------
    def _reduce_sum(self, t: torch.Tensor) -> torch.Tensor:
        """Sum over data-parallel ranks (identity on one process); returns a tensor on t's device."""
        if self.trainer.world_size == 1:
            return t
        return self.trainer.strategy.reduce(t.to(self.device), reduce_op="sum").to(t.device)

    def _no_sync(self, skip: bool):
        from lightning.pytorch.strategies import ParallelStrategy

        strategy = self.trainer.strategy
        return strategy.block_backward_sync() if skip and isinstance(strategy, ParallelStrategy) else nullcontext()

    def _clip_grad_norm(self) -> torch.Tensor:
        """Global L2 norm of the gradients before clipping (over all shards); clips to `grad_clip` when > 0."""
        return clip_grad_norm([p for p in self.model.parameters() if p.grad is not None], self.cfg.grad_clip)

    # --- training ----------------------------------------------------------------------------------
    def training_step(self, batch: dict, batch_idx: int) -> None:
        step = self.trainer.global_step
        if int(batch["step"]) != step:
            raise RuntimeError(f"data/step misalignment: batch of step {int(batch['step'])} at global step {step}")
        cfg, idx = self.cfg, batch["idx"]  # idx (A, micro_batch, T)
        A = idx.shape[0]
        var = VarianceAccumulator(self.run.model.n_layers) if cfg.var_every and step % cfg.var_every == 0 else None
        kurt = None
        if cfg.kurtosis_every and step % cfg.kurtosis_every == 0:
            kurt = KurtosisAccumulator(self.run.model.n_layers, self.run.model.d_model)
        opt, sched = self.optimizers(), self.lr_schedulers()
        lr = sched.get_last_lr()[0]
        losses = torch.zeros(2, dtype=torch.float64, device=self.device)  # Σ CE, Σ aux over micro-batches
        for a in range(A):
            inputs, targets = TokenWindows.inputs_targets(idx[a])
            with self._no_sync(a < A - 1):
                out = self.model(inputs, targets, capture=var is not None or kurt is not None, return_logits=False)
                if var is not None:
                    var.add(out.ctx.traces, self.model.final_norm)
                if kurt is not None:
                    kurt.add(out.ctx.traces)
                out.ctx.traces.clear()
                self.manual_backward(out.loss / A)
            losses[0] += out.ce_loss.detach().double()
            if out.aux_loss is not None:
                losses[1] += out.aux_loss.detach().double()
        ce, aux = (self._reduce_sum(losses) / (A * self.trainer.world_size)).tolist()
        loss = ce + aux
        row = {"step": step, "loss": loss, "ce": ce, "aux": aux, "lr": lr, "grad_norm": math.nan}
        if var is not None:
            self.log_rows["variance_log"].extend(var.rows(step, self._reduce_sum))
        if kurt is not None:
            self.log_rows["kurtosis_log"].extend(kurt.rows(step, self._reduce_sum))

        reason = None
        if not math.isfinite(loss) or loss > cfg.max_loss:
            reason = f"training loss {loss:.6g} is non-finite or above train.max_loss={cfg.max_loss:g}"
        else:
            grad_norm = float(self._clip_grad_norm())
            row["grad_norm"] = grad_norm
            if not math.isfinite(grad_norm):
                reason = f"gradient norm {grad_norm} is non-finite"
        # Logged before the update: a requeue checkpoint taken right after it (global_step = step + 1; the deferred
        # signal is handled as the block below ends) must find this step's row, or the resumed run never logs it.
        self.log_rows["train_log"].append(row)
        if reason is not None:
            opt.zero_grad(set_to_none=True)
            self.diverged = {"step": step, "loss": loss if math.isfinite(loss) else None, "reason": reason}
            self.trainer.should_stop = True
        else:
            with _signals_deferred():  # a requeue checkpoint never sees a half-applied update
                opt.step()
                sched.step()
            opt.zero_grad(set_to_none=True)
        self.log("loss", ce, prog_bar=True, logger=False)
        self.log("lr", lr, prog_bar=True, logger=False)

    # --- held-out loss (final / every val_every steps) ------------------------------------------------
    def on_validation_epoch_start(self) -> None:
        self._val = torch.zeros(2, dtype=torch.float64)

    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        inputs, targets = TokenWindows.inputs_targets(batch)
        out = self.model(inputs, targets, return_logits=False)
        n = int((targets != IGNORE_INDEX).sum())
        self._val += torch.tensor([out.ce_loss.double().item() * n, n], dtype=torch.float64)

    def on_validation_epoch_end(self) -> None:
        total, n = self._reduce_sum(self._val).tolist()
        val_loss = total / n
        self.last_val_step = self.trainer.global_step
        self.log_rows["val_log"].append({"step": self.trainer.global_step, "val_loss": val_loss, "val_targets": int(n)})
        self.log("val_loss", val_loss, prog_bar=True, logger=False)
