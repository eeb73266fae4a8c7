"""Group `lns` (issue 19, beyond the paper): E1's depth sweep with LayerNorm Scaling at every scale."""

from __future__ import annotations

from pathlib import Path

import pytest

from sparsecod.experiments import Registry, load_config
from sparsecod.model.params import measured_counts

ROOT = Path(__file__).resolve().parents[1]
SCALES = {"paper": "config", "mini": "mini", "smoke": "smoke"}
DEPTHS = (12, 16, 24, 32)


@pytest.mark.parametrize("scale", list(SCALES))
def test_lns_mirrors_e1_with_lns_only_changed(scale: str) -> None:
    reg = Registry(load_config(ROOT / "config" / f"{SCALES[scale]}.yaml"))
    assert reg.group_runs["lns"] == [f"lns-L{L}" for L in DEPTHS]
    for L in DEPTHS:
        lns, pre = reg.spec(f"lns-L{L}"), reg.spec(f"depth-L{L}")
        assert reg.canonical(f"lns-L{L}") == f"lns-L{L}"  # its own training, never an alias of the baseline
        assert lns.model.norm_scaling == "lns" and pre.model.norm_scaling == "none"
        assert lns.model.replace(norm_scaling="none", name="") == pre.model.replace(name="")
        assert lns.train == pre.train  # same budget, schedule, seed and LR placeholder
        assert lns.analyses == pre.analyses and lns.evaluate == pre.evaluate
        assert lns.labels == {"depth": L, "norm": "lns"}
    sweeps = {reg.spec(f"lns-L{L}").lr_sweep for L in DEPTHS}
    if scale != "paper":  # smoke and mini borrow E1's winners: no added sweep points
        assert sweeps == {"depth-shallow", "depth-deep"}
    else:  # E1's selection rule on its own proxies, same grids and budget fractions
        assert sweeps == {"lns-shallow", "lns-deep"}
        for ours, theirs in (("lns-shallow", "depth-shallow"), ("lns-deep", "depth-deep")):
            a, b = reg.sweeps[ours], reg.sweeps[theirs]
            assert (a.grid, a.budget_fraction) == (b.grid, b.budget_fraction)
            assert a.base == b.base.replace("depth-", "lns-")


def test_params_lists_the_lns_presets_with_e1_sizes() -> None:
    for L in DEPTHS:
        assert measured_counts(f"lns-L{L}") == measured_counts(f"depth-L{L}")
