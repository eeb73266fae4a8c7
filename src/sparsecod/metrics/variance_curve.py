"""M1 curves of a training variance log (protocol §2 M1): the last block's output variance over steps.

Read by collect (summary scalars) and by plots (curves, claims), so neither reaches into the other (issue 17.4).
A variance log is `sparsecod.train.read_log(run_dir, "variance")`: rows (step, layer, out_var, ...).
"""

from __future__ import annotations

import pandas as pd


def last_layer_curve(log: pd.DataFrame, column: str = "out_var") -> pd.DataFrame:
    """(step, value) of the last block's `column` from a variance log (step, layer, out_var, ...), by step."""
    part = log[log["layer"] == log["layer"].max()].sort_values("step")
    return pd.DataFrame({"step": part["step"].to_numpy(), "value": part[column].to_numpy()})


def tail_mean(values: pd.Series) -> float:
    """Mean over the last 10% (at least one) of a logged curve's points: M1 "final" values with less step noise."""
    return float(values.iloc[-max(1, len(values) // 10):].mean())
