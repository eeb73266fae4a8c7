"""Sample sets (protocol §1.6) and analysis settings of the metric suite (issue 4)."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from sparsecod.metrics.samples import analysis_set, attn_set, ppl_set
from sparsecod.metrics.settings import AnalysisSettings, read_settings_file
from sparsecod.model.config import ConfigError

STREAM = np.arange(10_000, dtype=np.uint16)  # token value = stream position: windows are easy to locate


def test_analysis_set_draws_aligned_distinct_windows_reproducibly() -> None:
    w = analysis_set(STREAM, window=50, n=20, seed=42)
    assert w.shape == (20, 50) and w.dtype.is_floating_point is False
    starts = w[:, 0].numpy()
    assert (starts % 50 == 0).all(), "windows are the non-overlapping 50-token grid"
    assert len(set(starts.tolist())) == 20, "no window twice"
    assert (w.numpy() == starts[:, None] + np.arange(50)).all(), "each row is one contiguous window"
    assert (analysis_set(STREAM, 50, 20, 42) == w).all(), "seeded"
    assert not (analysis_set(STREAM, 50, 20, 7) == w).all()
    # the Jacobian's "first 50" are the first rows of the same draw
    assert (analysis_set(STREAM, 50, 30, 42)[:20] == w).all()


def test_sample_sets_fail_clearly_when_the_stream_is_too_short() -> None:
    with pytest.raises(ConfigError, match="analysis.samples"):
        analysis_set(STREAM, window=512, n=100)
    with pytest.raises(ConfigError, match="analysis.attention_samples"):
        attn_set(STREAM, T_e=8192, n=2)
    with pytest.raises(ConfigError, match="analysis.ppl_tokens"):
        ppl_set(STREAM, T=16, n_tokens=20_000)


def test_attn_set_and_ppl_set() -> None:
    a = attn_set(STREAM, T_e=100, n=4, seed=42)
    assert a.shape == (4, 100) and (a[:, 0] % 100 == 0).all()
    p = ppl_set(STREAM, T=64, n_tokens=1000)
    assert p.shape == (15, 64), "ragged tail of the prefix dropped"
    assert (p.flatten().numpy() == np.arange(960)).all(), "a prefix of the stream, in order"


def test_settings_defaults_are_the_spec_values() -> None:
    s = AnalysisSettings()
    assert (s.seed, s.window, s.samples, s.jacobian_samples, s.attention_samples, s.ppl_tokens) == (
        42, 512, 100, 50, 16, 10_000_000)
    assert s.attention_lengths == (512, 1024, 2048, 4096, 8192)
    assert s.weight_eps == (1e-1, 3e-2, 1e-2, 3e-3, 1e-3, 3e-4, 1e-4, 1e-5, 1e-6)
    assert s.attention_eps == (1e-1, 1e-2, 1e-3, 1e-4, 1e-5)
    assert s.usefulness_tau == 0.1


def test_settings_validation() -> None:
    s = AnalysisSettings.from_mapping({"one_job_per_run": True, "ppl_tokens": 1.0e7, "window": 64,
                                       "attention_lengths": [16, 32]})
    assert s.ppl_tokens == 10_000_000 and isinstance(s.ppl_tokens, int) and s.attention_lengths == (16, 32)
    with pytest.raises(ConfigError, match="unknown analysis key.*windw"):
        AnalysisSettings.from_mapping({"windw": 3})
    with pytest.raises(ConfigError, match="jacobian_samples"):
        AnalysisSettings(samples=4, jacobian_samples=8)
    with pytest.raises(ConfigError, match="analysis.window must be an integer"):
        AnalysisSettings.from_mapping({"window": 12.5})


def test_read_settings_file_workflow_and_flat(tmp_path) -> None:
    wf = tmp_path / "wf.yaml"
    wf.write_text(yaml.safe_dump({"scale": "x", "analysis": {"one_job_per_run": True, "samples": 8}, "groups": {}}))
    mapping, workflow = read_settings_file(wf)
    assert mapping == {"one_job_per_run": True, "samples": 8} and workflow["scale"] == "x"
    flat = tmp_path / "flat.yaml"
    flat.write_text("window: 32\nsamples: 4\njacobian_samples: 2\n")
    mapping, workflow = read_settings_file(flat)
    assert AnalysisSettings.from_mapping(mapping).window == 32 and workflow is None
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_settings_file(tmp_path / "missing.yaml")
