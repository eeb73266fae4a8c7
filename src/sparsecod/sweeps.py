"""LR sweep selection (protocol Q1): the grid point with the lowest final held-out loss wins."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from .experiments import Sweep
from .fileio import write_json_atomic


def select_best(sweep: Sweep, summaries: list[Path], out: Path, log: Path | None = None) -> dict[str, Any]:
    """Read each point's summary.json, pick the lowest `final_val_loss` (diverged points never win); write the
    result to `out` and a one-line verdict to `log`."""
    points = []
    for lr, path in zip(sweep.grid, summaries):
        s = json.loads(path.read_text())
        loss = s.get("final_val_loss")
        ok = loss is not None and math.isfinite(loss) and not s.get("diverged", False)
        points.append({"run_id": s.get("run_id"), "lr": lr, "final_val_loss": loss, "diverged": s.get("diverged", False), "eligible": ok})
    eligible = [p for p in points if p["eligible"]]
    if not eligible:
        raise RuntimeError(
            f"sweep {sweep.name}: every grid point diverged or has no held-out loss (set train.val_tokens > 0); "
            f"points: {points}"
        )
    best = min(eligible, key=lambda p: p["final_val_loss"])
    result = {"sweep": sweep.name, "base": sweep.base, "best_lr": best["lr"], "best_run": best["run_id"], "points": points}
    write_json_atomic(out, result)
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(f"sweep {sweep.name}: best lr {best['lr']} ({best['run_id']})\n")
    return result
