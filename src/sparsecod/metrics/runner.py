"""`sparsecod analyze`: load a trained run, draw the sample sets, compute metric families, write their files.

Metric names (one output family each, `<run_dir>/analysis/<name>.{json,parquet}`): those of registry.py (name
-> protocol items, compute function, untrained-control membership). Several names (or `all`) run in one process
that loads the model and the held-out stream once (small scales keep the job count low this way). `all` means
the analyses the workflow config lists for the run's group(s) (its own and its aliases'), or every family when
no workflow config is given.
The run's training length T comes from `<run_dir>/run.yaml` (RunConfig), else `analysis.ppl_seq_len`.
Untrained control (`analysis.init_control`): the families of registry.INIT_METRICS are also computed, in the same
process and on the same windows, for the run's step-0 weights rebuilt from its seed (`model.io.init_model`, exactly what
training started from) and written to `<run_dir>/analysis/init/<name>.*`.
"""

from __future__ import annotations

import logging
import os
import time
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import RunConfig
from ..config.errors import ConfigError
from .registry import INIT_DIR, INIT_METRICS, METRICS, REGISTRY, control_name
from .results import MetricResult, write_result
from .samples import analysis_set, heldout_stream
from .settings import AnalysisSettings

log = logging.getLogger(__name__)


def resolve_metrics(
    spec: str, workflow_config: dict[str, Any] | None = None, run: RunConfig | None = None
) -> list[str]:
    """'causal,permutation' | 'all' -> metric names in a fixed order; unknown names fail listing the known ones."""
    names = [s.strip() for s in spec.split(",") if s.strip()]
    if names == ["all"]:
        if workflow_config is not None and "groups" in workflow_config and run is not None:
            ids = {run.run_id, *run.meta.get("aliases", [])}
            wanted = set()
            for group in (workflow_config.get("groups") or {}).values():
                if ids & set((group or {}).get("runs") or {}):
                    wanted.update(group.get("analyses") or ())
            names = list(wanted)
        else:
            names = list(METRICS)
    unknown = sorted(set(names) - set(METRICS))
    if unknown or not names and spec.strip() != "all":
        raise ConfigError(f"unknown metric(s) {unknown or [spec]}; use 'all' or a comma list of {', '.join(METRICS)}")
    return [m for m in METRICS if m in names]


class Analysis:
    """One run's analysis context: the model, its run config, the held-out stream and the sample sets (cached)."""

    def __init__(
        self,
        run_dir: str | os.PathLike,
        settings: AnalysisSettings,
        heldout: str | os.PathLike | None = None,
        bf16: bool = False,
        device: str | None = None,
        progress: bool = True,
    ) -> None:
        from ..model.io import load_model

        self.run_dir = Path(run_dir)
        self.settings, self.bf16, self.progress = settings, bf16, progress
        run_yaml = self.run_dir / "run.yaml"
        self.run = RunConfig.load(run_yaml) if run_yaml.is_file() else None
        if heldout is None:
            if self.run is None:
                raise ConfigError(f"no --heldout shard directory given and {run_yaml} (whose `data` names it) "
                                  "is missing")
            heldout = self.run.data
        self.heldout = Path(heldout)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = load_model(self.run_dir / "model", self.device)

    @property
    def run_id(self) -> str:
        return self.run.run_id if self.run is not None else self.run_dir.name

    @cached_property
    def tokens(self) -> np.ndarray:
        """The held-out stream, after checking that the shard's tokenizer is the model's."""
        from ..fileio import file_sha256
        from ..data.shards import read_meta

        meta = read_meta(self.heldout)
        model_dir = self.run_dir / "model"
        hint = "pass the shard the run was trained on (--heldout)"
        if int(meta["vocab_size"]) != self.model.cfg.vocab_size:
            raise ConfigError(f"held-out shard {self.heldout} has vocab_size {meta['vocab_size']} but the model in "
                              f"{model_dir} was built for {self.model.cfg.vocab_size}: {hint}")
        tok = model_dir / "tokenizer.json"
        if tok.is_file() and meta.get("tokenizer_sha256") and file_sha256(tok) != meta["tokenizer_sha256"]:
            raise ConfigError(f"{tok} differs from the tokenizer of the held-out shard {self.heldout}: {hint}")
        return heldout_stream(self.heldout)

    @cached_property
    def analysis_windows(self) -> torch.Tensor:
        s = self.settings
        return analysis_set(self.tokens, s.window, s.samples, s.seed)

    @property
    def train_seq_len(self) -> int:
        if self.settings.ppl_seq_len is not None:
            return self.settings.ppl_seq_len
        if self.run is None:
            raise ConfigError(f"{self.run_dir / 'run.yaml'} is missing: set analysis.ppl_seq_len to the model's "
                              "training T")
        return self.run.train.seq_len

    @property
    def forward(self) -> dict[str, Any]:
        """Keyword arguments of every family's forwards: bf16 autocast and progress bars."""
        return {"bf16": self.bf16, "progress": self.progress}

    @property
    def bootstrap(self) -> dict[str, Any]:
        """Keyword arguments of the window bootstrap intervals (analysis.bootstrap_resamples, analysis.seed)."""
        return {"boot_resamples": self.settings.bootstrap_resamples, "boot_seed": self.settings.seed}

    @property
    def intervention(self) -> dict[str, Any]:
        """Keyword arguments of the intervention families (causal, permutation, usefulness: intervene.py)."""
        return {**self.forward, **self.bootstrap, "chain_tokens": self.settings.chain_tokens_for(self.device.type)}

    def compute(self, name: str) -> MetricResult:
        """Family `name` of the registry on this context's model (trained, or the untrained control)."""
        if name not in REGISTRY:
            raise ConfigError(f"unknown metric {name!r}; known: {', '.join(METRICS)}")
        return REGISTRY[name].compute(self)

    def use_init_weights(self) -> None:
        """Replace the trained model by the run's step-0 weights (same config, rebuilt from train.seed)."""
        from ..model.io import init_model

        if self.run is None:
            raise ConfigError(f"{self.run_dir / 'run.yaml'} is missing: the untrained control needs the run's seed "
                              "(or set analysis.init_control: false)")
        self.model = init_model(self.model.cfg, self.run.train.seed).to(self.device).eval()
        self.initial = True

    initial = False

    def run_metric(self, name: str) -> list[Path]:
        """Compute one family and write `<run_dir>/analysis/<name>.*` (`analysis/init/` for the untrained
        control); returns the written paths."""
        start = time.perf_counter()
        result = self.compute(name)
        meta = {
            "run_id": self.run_id,
            "heldout": str(self.heldout),
            "precision": "bf16" if self.bf16 else "fp32",
            "device": str(self.device),
            "model": self.model.cfg.name or None,
            "n_layers": self.model.cfg.n_layers,
            "d_model": self.model.cfg.d_model,
            "settings": self.settings.to_dict(),
            "seconds": round(time.perf_counter() - start, 3),
            "weights": "init (step 0)" if self.initial else "trained",
        }
        out = self.run_dir / "analysis" / (INIT_DIR if self.initial else "")
        paths = write_result(out, name, result, meta)
        log.info("%s: %s%s written in %.1f s", self.run_id, name, " (init)" if self.initial else "", meta["seconds"])
        return paths


def analyze(
    run_dir: str | os.PathLike,
    metrics: str = "all",
    heldout: str | os.PathLike | None = None,
    settings: AnalysisSettings | None = None,
    workflow_config: dict[str, Any] | None = None,
    bf16: bool = False,
    device: str | None = None,
    progress: bool = True,
) -> dict[str, list[Path]]:
    """Compute the requested metric families of one run (see the module docstring); returns name -> files."""
    ctx = Analysis(run_dir, settings or AnalysisSettings(), heldout, bf16, device, progress)
    names = resolve_metrics(metrics, workflow_config, ctx.run)
    if not names:
        log.info("%s: no analyses requested for this run", ctx.run_id)
    files = {name: ctx.run_metric(name) for name in names}
    control = [n for n in names if n in INIT_METRICS]
    if ctx.settings.init_control and control:
        ctx.use_init_weights()
        files.update({control_name(name): ctx.run_metric(name) for name in control})
    return files
