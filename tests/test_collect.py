"""collect (DESIGN data flow): per-seed rows with their mean and spread, untrained-control rows, stderr rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from _plots_testutil import make_results
from sparsecod.collect import COLUMNS, INIT


@pytest.fixture(scope="module")
def summary(tmp_path_factory) -> pd.DataFrame:
    root = tmp_path_factory.mktemp("collect") / "results"
    make_results(root)
    return pd.read_parquet(root / "summary.parquet")


def test_every_seed_has_rows_with_the_mean_and_spread_over_its_seeds(summary) -> None:
    assert list(summary.columns[: len(COLUMNS)]) == COLUMNS
    rows = summary[(summary.base_run == "gqa-G4") & (summary.source == "causal") & (summary.metric == "causal_global")]
    assert sorted(rows.run_id) == ["gqa-G4", "gqa-G4~s1"] and sorted(rows.seed) == [0, 1]
    assert (rows.seed_n == 2).all() and rows.seed_mean.iloc[0] == pytest.approx(rows.value.mean())
    assert rows.seed_sd.iloc[0] == pytest.approx(rows.value.std(ddof=1))
    single = summary[(summary.run_id == "depth-L16") & (summary.source == "causal")].iloc[0]
    assert single.base_run == "depth-L16" and single.seed_n == 1 and np.isnan(single.seed_sd)


def test_untrained_controls_intervals_and_stderr_are_collected(summary) -> None:
    run = summary[summary.run_id == "depth-L16"]
    assert {f"causal{INIT}", f"usefulness{INIT}"} <= set(run.source)
    assert {"ci.causal_global.low", "ci.causal_global.high"} <= set(run[run.source == "causal"].metric)
    assert (run[run.source == "variance"].metric == "last_layer.init").any()
    assert (run[run.source == "eval"].metric == "hellaswag.acc_norm_stderr").any()
