"""Run registry and workflow configs (issue 6; protocol §3 E1-E7, Q1)."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml

from sparsecod.config import RunConfig
from sparsecod.experiments import Registry, load_config, lr_tag
from sparsecod.model import ConfigError
from sparsecod.model.params import measured_counts

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {scale: ROOT / "config" / f"{name}.yaml" for scale, name in
           [("paper", "config"), ("mini", "mini"), ("smoke", "smoke")]}

# protocol §3: run -> (L, d, H, H_kv, T, B, steps, λ)
PAPER_RUNS = {
    "depth-L12": (12, 2048, 16, 16, 1024, 256, 38147, 0.1),
    "depth-L16": (16, 2048, 16, 16, 1024, 256, 38147, 0.1),
    "depth-L24": (24, 2048, 16, 16, 1024, 256, 38147, 0.1),
    "depth-L32": (32, 2048, 16, 16, 1024, 256, 38147, 0.1),
    **{f"wd-{w}": (16, 2048, 16, 16, 4096, 128, 9537, float(w)) for w in ["0", "0.01", "0.1", "1.0", "3.0"]},
    "seq-256": (16, 2048, 16, 16, 256, 256, 76294, 0.1),
    "seq-512": (16, 2048, 16, 16, 512, 256, 38147, 0.1),
    "seq-1024": (16, 2048, 16, 16, 1024, 256, 19073, 0.1),
    "seq-2048": (16, 2048, 16, 16, 2048, 256, 9537, 0.1),
    "seq-4096": (16, 2048, 16, 16, 4096, 256, 4768, 0.1),
    "seq-8192": (16, 2048, 16, 16, 8192, 256, 2384, 0.1),
    "gqa-G1": (16, 2048, 16, 16, 4096, 256, 4768, 0.1),
    "gqa-G4": (16, 2048, 16, 4, 4096, 256, 5102, 0.1),
    "gqa-G16": (16, 2048, 16, 1, 4096, 256, 5341, 0.1),
    "dense-400M": (16, 1536, 12, 12, 4096, 256, 4768, 0.1),
    "moe-2BA400M": (16, 768, 12, 12, 4096, 256, 4768, 0.1),
    "dense-1B": (16, 2048, 16, 16, 4096, 256, 4768, 0.1),
    "moe-7BA1B": (16, 2048, 16, 16, 4096, 256, 4768, 0.1),
    "abl-A0": (16, 2048, 16, 16, 1024, 256, 38147, 0.1),
    "abl-A1": (32, 1536, 16, 16, 1024, 256, 38147, 0.1),
    "abl-A2": (32, 1536, 16, 16, 4096, 256, 9537, 0.1),
    "abl-A3": (32, 1536, 16, 16, 8192, 256, 4768, 0.1),
    "abl-A4": (32, 1536, 16, 16, 4096, 256, 9537, 0.3),
    "abl-A5": (32, 1536, 16, 16, 4096, 256, 9537, 0.6),
    "abl-A6": (32, 1536, 16, 16, 4096, 256, 9537, 1.0),
    "abl-A7": (32, 1536, 16, 8, 4096, 256, 9537, 0.3),
    "abl-A8": (32, 1120, 16, 8, 4096, 256, 9537, 0.3),
    "sub-L16": (16, 1536, 12, 12, 4096, 256, 4768, 0.1),
    "sub-L32": (32, 1536, 12, 12, 4096, 256, 4768, 0.1),
}


@pytest.fixture(scope="module")
def paper() -> Registry:
    return Registry(load_config(CONFIGS["paper"]))


def test_paper_config_yields_exactly_the_spec_runs(paper: Registry) -> None:
    assert set(paper.all_ids()) - set(paper.group_runs["lns"]) == set(PAPER_RUNS)  # lns: beyond the paper
    for run_id, (L, d, H, Hkv, T, B, steps, wd) in PAPER_RUNS.items():
        s = paper.spec(run_id)
        got = (s.model.n_layers, s.model.d_model, s.model.n_heads, s.model.n_kv_heads,
               s.train.seq_len, s.train.global_batch, s.train.steps, s.train.weight_decay)
        assert got == (L, d, H, Hkv, T, B, steps, wd), run_id
    assert paper.spec("sub-L16").train.last_step == 1600
    assert paper.spec("sub-L16").train.kurtosis_every == 10


def test_paper_models_equal_the_presets(paper: Registry) -> None:
    for run_id, preset in [("depth-L12", "depth-L12"), ("gqa-G4", "gqa-G4"), ("moe-2BA400M", "moe-2BA400M"),
                           ("moe-7BA1B", "moe-7BA1B"), ("abl-A8", "abl-A8"), ("sub-L32", "sub-L32")]:
        assert paper.spec(run_id).model.param_counts() == measured_counts(preset)


def test_identical_configurations_train_once(paper: Registry) -> None:
    assert paper.aliases == {"gqa-G1": "seq-4096", "dense-1B": "seq-4096"}
    assert paper.run_dir("dense-1B") == paper.run_dir("seq-4096")
    assert paper.spec("gqa-G1").labels == {"group_size": 1}  # an alias keeps its own labels
    assert "gqa-G1" not in paper.trained_ids()


def test_lr_sweeps(paper: Registry) -> None:
    sweep = paper.sweeps["depth-shallow"]
    assert sweep.points == ("depth-L16@lr3e-4", "depth-L16@lr6e-4", "depth-L16@lr1e-3", "depth-L16@lr2e-3")
    point = paper.runs["depth-L16@lr1e-3"]
    assert point.train.lr == 1e-3 and point.train.steps == round(38147 * 0.1)
    assert paper.spec("depth-L24").lr_sweep == "depth-deep"
    assert lr_tag(2.5e-4) == "2.5e-4" and lr_tag(1e-2) == "1e-2"


def test_run_config_takes_lr_from_sweep_and_vocab_from_shards(paper: Registry, tmp_path: Path) -> None:
    cfg = copy.deepcopy(paper.config)
    cfg["results"] = str(tmp_path)
    reg = Registry(cfg)
    with pytest.raises(FileNotFoundError, match="tokenize"):
        reg.run_config("depth-L16")
    reg.data_dir().mkdir(parents=True)
    (reg.data_dir() / "meta.json").write_text('{"vocab_size": 50280}')
    with pytest.raises(FileNotFoundError, match="depth-shallow"):
        reg.run_config("depth-L16")
    reg.sweep_file("depth-shallow").parent.mkdir(parents=True)
    reg.sweep_file("depth-shallow").write_text('{"best_lr": 6e-4}')
    rc = reg.run_config("depth-L16")
    assert rc.train.lr == 6e-4 and rc.model.vocab_size == 50280 and rc.meta["group"] == "depth"
    assert reg.run_config("depth-L16@lr2e-3").train.lr == 2e-3
    saved = reg.write_run_config("depth-L16", tmp_path / "run.yaml", tmp_path / "logs" / "run.log")
    assert RunConfig.load(tmp_path / "run.yaml") == saved
    assert (tmp_path / "logs" / "run.log").read_text() == "run depth-L16: lr=0.0006 steps=38147 vocab=50280\n"


@pytest.mark.parametrize("scale", ["mini", "smoke"])
def test_every_scale_defines_the_same_runs(paper: Registry, scale: str) -> None:
    small = Registry(load_config(CONFIGS[scale]))
    assert small.all_ids() == paper.all_ids()
    assert small.aliases == paper.aliases
    borrowed = {"lns-shallow", "lns-deep"}  # smoke and mini lns use E1's winners (smoke.yaml, mini.yaml)
    assert set(small.sweeps) == set(paper.sweeps) - borrowed
    for run_id in paper.all_ids():
        assert small.spec(run_id).analyses == paper.spec(run_id).analyses
        assert bool(small.spec(run_id).evaluate) == bool(paper.spec(run_id).evaluate)
        stock = set(small.spec(run_id).evaluate) - {"pydoc_cont4"}  # the small scales add the embedded task (M12)
        assert stock <= set(paper.spec(run_id).evaluate)  # mini and smoke may drop MMLU
        assert ("pydoc_cont4" in small.spec(run_id).evaluate) == bool(paper.spec(run_id).evaluate)


def test_each_group_scores_its_own_tasks_and_aliases_share_one_evaluation(paper: Registry) -> None:
    assert paper.evaluation_tasks("depth-L16") == ["mmlu", "arc_easy", "arc_challenge", "hellaswag"]  # Table 1
    assert paper.evaluation_tasks("abl-A4") == ["arc_challenge", "hellaswag"]  # protocol E6: Fig 1
    assert paper.evaluation_tasks("wd-0.1") == [] and not paper.spec("wd-0.1").evaluate
    cfg = copy.deepcopy(paper.config)
    cfg["groups"]["seqlen"]["evaluate"] = ["hellaswag"]
    cfg["groups"]["gqa"]["evaluate"] = ["arc_easy"]
    reg = Registry(cfg)  # seq-4096 = gqa-G1 = dense-1B train once, so they are scored once on the union
    for run_id in ("seq-4096", "gqa-G1", "dense-1B"):
        assert reg.evaluation_tasks(run_id) == ["arc_easy", "hellaswag"]
    assert reg.spec("dense-1B").evaluate == () and reg.spec("gqa-G1").evaluate == ("arc_easy",)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda c: c["models"]["gqa-G4"].update(n_kv_heads=3), "models.gqa-G4: model.n_heads=16 must be divisible"),
        (lambda c: c["models"]["moe-7BA1B"]["moe"].update(top_k=65), "top_k=65"),
        (lambda c: c["groups"]["depth"]["runs"]["depth-L12"].update(model="nope"), "depth-L12.model='nope'"),
        (lambda c: c["groups"]["depth"]["runs"]["depth-L12"].update(bogus=1), "bogus"),
        (lambda c: c["lr"].update(shallow={"sweep": "missing"}), "missing"),
        (lambda c: c["groups"].pop("gqa"), "groups.gqa is missing"),
        (lambda c: c["groups"]["ablation"].update(evaluate=["hellaswag", "piqa"]), "not there: ['piqa']"),
        (lambda c: c["groups"]["depth"].update(evaluate="mmlu"), "groups.depth.evaluate='mmlu': give true, false"),
    ],
)
def test_bad_configs_name_the_key(paper: Registry, edit, message: str) -> None:
    cfg = copy.deepcopy(paper.config)
    edit(cfg)
    with pytest.raises(ConfigError, match=re.escape(message)):
        Registry(cfg)


def test_configs_are_valid_yaml_with_comments() -> None:
    for path in CONFIGS.values():
        text = path.read_text()
        assert text.lstrip().startswith("#"), f"{path} must start with a comment saying what it is"
        assert yaml.safe_load(text)["scale"] in {"paper", "mini", "smoke"}


def test_replicate_seeds_keep_stable_ids_share_sweeps_and_aliases(paper: Registry) -> None:
    cfg = copy.deepcopy(paper.config)
    cfg["groups"]["gqa"]["seeds"] = 3
    cfg["groups"]["seqlen"]["runs"]["seq-4096"]["seeds"] = 2
    reg = Registry(cfg)
    assert reg.group_runs["gqa"] == paper.group_runs["gqa"] and reg.all_ids() == paper.all_ids()
    assert reg.group_ids("gqa") == ["gqa-G1", "gqa-G1~s1", "gqa-G1~s2", "gqa-G4", "gqa-G4~s1", "gqa-G4~s2",
                                    "gqa-G16", "gqa-G16~s1", "gqa-G16~s2"]
    assert reg.replicas("gqa-G4~s2") == reg.replicas("gqa-G4") == ["gqa-G4", "gqa-G4~s1", "gqa-G4~s2"]
    assert [reg.spec(r).train.seed for r in reg.replicas("gqa-G4")] == [6198, 6199, 6200]
    # seed k of gqa-G1 is seed k of seq-4096 where both exist; the third seed trains on its own
    assert reg.canonical("gqa-G1") == "seq-4096" and reg.canonical("gqa-G1~s1") == "seq-4096~s1"
    assert reg.canonical("gqa-G1~s2") == "gqa-G1~s2"
    # the sweep tunes on its base run's seed 0; every seed reads that winner
    assert reg.sweeps["L16-T4096"].points == paper.sweeps["L16-T4096"].points
    assert {reg.spec(r).lr_sweep for r in reg.replicas("gqa-G4")} == {"L16-T4096"}
    assert set(reg.trained_ids()) - set(paper.trained_ids()) == {"gqa-G1~s2", "gqa-G4~s1", "gqa-G4~s2",
                                                                 "gqa-G16~s1", "gqa-G16~s2", "seq-4096~s1"}


@pytest.mark.parametrize("seeds", [0, 1.5, True])
def test_bad_seed_counts_name_the_key(paper: Registry, seeds) -> None:
    cfg = copy.deepcopy(paper.config)
    cfg["groups"]["depth"]["seeds"] = seeds
    with pytest.raises(ConfigError, match=r"groups\.depth\.runs\.depth-L12\.seeds=.*integer >= 1"):
        Registry(cfg)


def test_the_paper_config_trains_one_seed(paper: Registry) -> None:
    assert all(paper.replicas(r) == [r] for r in paper.all_ids())
