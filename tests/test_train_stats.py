"""M1/M2 variance and M10 kurtosis accumulators, and the append-only logs that survive resume."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from _train_testutil import MODELS
from sparsecod.model.moments import per_dim_kurtosis
from sparsecod.model import Transformer
from sparsecod.train.logs import LOG_SCHEMA, LogWriter, consolidate, read_log
from sparsecod.train.stats import KurtosisAccumulator, VarianceAccumulator


def _np_var(h: torch.Tensor) -> float:
    """Protocol M1 by hand: per-token variance across features (1/(d-1)), mean over tokens."""
    x = h.detach().double().numpy().reshape(-1, h.shape[-1])
    return float(np.mean(np.sum((x - x.mean(1, keepdims=True)) ** 2, axis=1) / (x.shape[1] - 1)))


def _np_rms_norm(x: torch.Tensor, g: torch.Tensor, eps: float) -> torch.Tensor:
    xd = x.detach().double()
    return xd / torch.sqrt((xd**2).mean(-1, keepdim=True) + eps) * g.detach().double()


@pytest.fixture
def traces():
    """Block traces of two micro-batches (sizes 3 and 1: unequal, to test token weighting)."""
    torch.manual_seed(0)
    model = Transformer(MODELS["moe"])
    with torch.no_grad():
        model.final_norm.weight.uniform_(0.5, 2.0)
    out = []
    for b in (3, 1):
        idx = torch.randint(0, 96, (b, 16))
        out.append(model(idx, capture=True).ctx.traces)
    return model, out


def test_variance_rows_equal_numpy_on_captured_activations(traces):
    model, mbs = traces
    acc = VarianceAccumulator(2)
    for tr in mbs:
        acc.add(tr, model.final_norm)
    rows = acc.rows(step=7)
    assert [(r["step"], r["layer"]) for r in rows] == [(7, 0), (7, 1)]
    for l, row in enumerate(rows):
        for col, attr in (("out_var", "output"), ("attn_out_var", "attn_out"), ("ffn_out_var", "ffn_out")):
            whole = torch.cat([getattr(tr[l], attr) for tr in mbs])  # token-weighted == over all tokens
            assert row[col] == pytest.approx(_np_var(whole), rel=1e-5), (l, col)
    x_last = torch.cat([tr[-1].output for tr in mbs])
    assert rows[0]["var_pre"] == pytest.approx(_np_var(x_last), rel=1e-5)
    post = _np_rms_norm(x_last, model.final_norm.weight, model.cfg.norm_eps)
    assert rows[0]["var_post"] == pytest.approx(_np_var(post), rel=1e-5)
    assert rows[1]["var_pre"] == rows[0]["var_pre"] and rows[1]["out_var"] == pytest.approx(rows[1]["var_pre"])


def test_variance_reduce_combines_ranks_token_weighted(traces):
    model, (mb3, mb1) = traces
    r0, r1 = VarianceAccumulator(2), VarianceAccumulator(2)
    r0.add(mb3, model.final_norm)
    r1.add(mb1, model.final_norm)
    both = VarianceAccumulator(2)
    both.add(mb3, model.final_norm)
    both.add(mb1, model.final_norm)

    def fake_all_reduce(t):  # what rank 0 receives: the sum of both ranks' packed tensors
        other = torch.cat([r1.sums.flatten(), r1.final, torch.tensor([float(r1.tokens)], dtype=torch.float64)])
        return t + other

    got, want = r0.rows(0, fake_all_reduce), both.rows(0)
    for g, w in zip(got, want):
        for k in w:
            assert g[k] == pytest.approx(w[k], rel=1e-12)


def test_kurtosis_pools_all_tokens_of_the_step(traces):
    _, mbs = traces
    acc = KurtosisAccumulator(2, 32)
    for tr in mbs:
        acc.add(tr)
    kappa = acc.per_dim()
    rows = acc.rows(step=3)
    for l in range(2):
        whole = torch.cat([tr[l].output for tr in mbs])
        ref = per_dim_kurtosis(whole).double()
        torch.testing.assert_close(kappa[l], ref, rtol=1e-4, atol=1e-4)
        assert rows[l]["kurtosis"] == pytest.approx(float(ref.mean()), rel=1e-4)
        assert rows[l]["kurt_max"] == pytest.approx(float(ref.max()), rel=1e-4)
        assert rows[l]["kurt_p50"] == pytest.approx(float(ref.median().item()), rel=0.1)


def test_kurtosis_of_a_known_distribution():
    """Two-point ±1 data has κ = 1; a constant feature gets the protocol's κ = 3."""
    h = torch.ones(1000, 2)
    h[::2, 0] = -1.0
    h[:, 1] = 5.0
    acc = KurtosisAccumulator(1, 2)
    acc.add([type("T", (), {"output": h.view(10, 100, 2)})()])
    assert acc.per_dim()[0].tolist() == pytest.approx([1.0, 3.0])


def _var_row(step: int, layer: int, value: float) -> dict:
    return {"step": step, "layer": layer, "out_var": value, "attn_out_var": 0.0, "ffn_out_var": 0.0, "var_pre": 1.0,
            "var_post": 1.0}


def test_logs_append_only_and_latest_part_wins(tmp_path):
    w = LogWriter(tmp_path, "variance_log")
    w.append([_var_row(s, l, float(s)) for s in range(4) for l in range(2)])
    w.flush()
    # a crash after step 3, resume from a checkpoint at step 2: steps 2.. are recomputed and written again
    w2 = LogWriter(tmp_path, "variance_log")
    w2.append([_var_row(s, l, 10.0 + s) for s in range(2, 6) for l in range(2)])
    w2.flush()
    assert w2.flush() is None  # nothing buffered, no empty part
    parts = sorted(p.name for p in (tmp_path / "log_parts" / "variance_log").iterdir())
    assert parts == ["part-000001.parquet", "part-000002.parquet"]
    df = read_log(tmp_path, "variance_log")
    assert df["step"].tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert df["layer"].tolist() == [0, 1] * 6
    assert df["out_var"].tolist() == [0, 0, 1, 1, 12, 12, 13, 13, 14, 14, 15, 15]
    path = consolidate(tmp_path, "variance_log", max_step=4)
    assert pd.read_parquet(path)["step"].max() == 4
    empty = pd.read_parquet(consolidate(tmp_path, "kurtosis_log", max_step=4))
    assert empty.dtypes.astype(str).to_dict() == LOG_SCHEMA["kurtosis_log"] and len(empty) == 0
    with pytest.raises(FileNotFoundError):
        read_log(tmp_path, "train_log")
    with pytest.raises(ValueError):
        read_log(tmp_path, "nope")


def test_log_rows_must_have_the_schema_columns(tmp_path):
    """A row without a column would be written as a NaN column (float64 in every later read): refused instead."""
    w = LogWriter(tmp_path, "train_log")
    w.append([{"step": 0, "loss": 1.0, "ce": 1.0, "aux": 0.0, "lr": 1e-3, "grad_norm": 1.0}])
    with pytest.raises(ValueError, match=r"train_log row of step 0 has missing columns \['tokens', 'train_seconds'\]"):
        w.flush()
    assert not (tmp_path / "log_parts" / "train_log").exists()


def test_a_checkpoint_in_the_middle_of_a_step_keeps_the_train_log_typed(tmp_path):
    """Lightning's SLURM handler checkpoints inside a step (after its deferred update): RunLogs then drains a
    train_log row that on_train_batch_end has not completed yet. The part must still hold `tokens` (int64), and
    read across parts the log keeps the dtypes of an uninterrupted run (the CI failure: tokens int64 vs float64)."""
    from types import SimpleNamespace

    from sparsecod.train.callbacks import RunLogs

    logs = RunLogs(tmp_path, tokens_per_step=16)
    trainer = SimpleNamespace(is_global_zero=True, should_stop=False, world_size=1, loggers=[])
    base = {"loss": 2.0, "ce": 2.0, "aux": 0.0, "lr": 1e-3, "grad_norm": 0.5}
    module = SimpleNamespace(log_rows={name: [] for name in LOG_SCHEMA}, log=lambda *a, **k: None)
    logs.on_train_batch_start(trainer, module, None, 0)
    module.log_rows["train_log"].append({"step": 7, **base})
    logs.on_save_checkpoint(trainer, module, {})  # the requeue checkpoint, mid-step
    logs.on_train_batch_end(trainer, module, None, None, 0)  # the same step ends: nothing left to complete
    module.log_rows["train_log"].append({"step": 8, **base})  # the next step, the normal way
    logs.on_train_batch_end(trainer, module, None, None, 0)
    logs.on_train_end(trainer, module)
    df = read_log(tmp_path, "train_log")
    assert df["step"].tolist() == [7, 8] and df["tokens"].tolist() == [128, 144]
    assert df.dtypes.astype(str).to_dict() == LOG_SCHEMA["train_log"]
    assert len(list((tmp_path / "log_parts" / "train_log").glob("part-*.parquet"))) == 2


def test_pick_checkpoint_prefers_the_newest_readable(tmp_path):
    import os

    from sparsecod.train.run import pick_checkpoint

    assert pick_checkpoint(tmp_path) is None
    last, hpc, broken = tmp_path / "last.ckpt", tmp_path / "hpc_ckpt_1.ckpt", tmp_path / "hpc_ckpt_2.ckpt"
    torch.save({"global_step": 10}, last)
    torch.save({"global_step": 13}, hpc)
    torch.save({"global_step": 15}, broken)
    broken.write_bytes(broken.read_bytes()[:50])  # killed mid-write
    for i, p in enumerate((last, hpc, broken)):
        os.utime(p, ns=(10**18 + i * 10**9, 10**18 + i * 10**9))
    with pytest.warns(UserWarning, match="cannot be read"):
        assert pick_checkpoint(tmp_path) == hpc
    os.utime(last, ns=(2 * 10**18, 2 * 10**18))
    assert pick_checkpoint(tmp_path) == last


def test_requeue_signal_is_held_during_the_update():
    import os
    import signal

    from sparsecod.train.module import _signals_deferred

    seen = []
    old = signal.signal(signal.SIGUSR1, lambda *a: seen.append("handled"))
    try:
        with _signals_deferred():
            os.kill(os.getpid(), signal.SIGUSR1)
            seen.append("update done")
        assert seen == ["update done", "handled"]
    finally:
        signal.signal(signal.SIGUSR1, old)
