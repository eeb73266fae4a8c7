"""One config model (issue 17.3, 15.5): every key defined once, the workflow schema generated from it."""

from __future__ import annotations

import copy
import typing
from pathlib import Path

import pytest
import yaml
from lightning.fabric.connector import _PRECISION_INPUT_STR
from snakemake.utils import validate

from sparsecod.config import PRECISIONS, ConfigError, TrainConfig
from sparsecod.config.analysis import AnalysisSettings
from sparsecod.config.schema import schema_yaml, workflow_schema
from sparsecod.data.config import DataConfig
from sparsecod.experiments import load_config
from sparsecod.model.config import ModelConfig
from sparsecod.train.memory_plan import _bytes

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"
CONFIGS = [ROOT / "config" / f"{name}.yaml" for name in ("config", "mini", "smoke")]


def test_committed_schema_is_the_generated_one() -> None:
    assert SCHEMA.read_text() == schema_yaml(), "regenerate: sparsecod schema > workflow/schemas/config.schema.yaml"


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_every_scale_validates_and_validation_adds_nothing(path: Path) -> None:
    config = load_config(path)
    before = copy.deepcopy(config)
    validate(config, str(SCHEMA))
    assert config == before  # no defaults written into the config: the rules' params stay as they were


def test_schema_keys_are_the_classes_keys() -> None:
    schema = workflow_schema()
    props = schema["properties"]
    assert set(schema["$defs"]["train_settings"]["properties"]) >= set(TrainConfig.__pydantic_fields__)
    assert list(props["data"]["properties"]) == list(DataConfig.__pydantic_fields__)
    assert "name" not in schema["$defs"]["model"]["properties"]  # internal, set by the registry
    assert set(props["analysis"]["properties"]) == {"one_job_per_run", *AnalysisSettings.__pydantic_fields__}
    assert schema["$defs"]["model"]["required"] == ["n_layers", "d_model", "n_heads", "n_kv_heads", "d_ff"]
    assert not any("default" in node for node in _nodes(schema) if isinstance(node, dict) and "type" in node)


def test_a_schema_rejection_matches_the_python_one() -> None:
    config = load_config(CONFIGS[2])
    config["defaults"]["seq_len"] = 0
    with pytest.raises(Exception, match="seq_len"):
        validate(config, str(SCHEMA))
    with pytest.raises(ConfigError, match=r"^train\.seq_len must be >= 1, got 0$"):
        TrainConfig(seq_len=0)


def test_precisions_are_one_list_of_lightning_strings() -> None:
    """15.5: the schema, TrainConfig and the memory plan accept the same precisions, all Lightning's."""
    lightning = set(typing.get_args(_PRECISION_INPUT_STR))
    assert set(PRECISIONS) <= lightning and "bf16-mixed" in PRECISIONS
    enum = workflow_schema()["$defs"]["train_settings"]["properties"]["precision"]["enum"]
    assert enum == list(PRECISIONS)
    for precision in PRECISIONS:
        train = TrainConfig(precision=precision)
        assert _bytes(train)  # the memory plan knows each
    for rejected in ("16-mixed", "32", "fp16"):
        with pytest.raises(ConfigError, match=f"train.precision='{rejected}': use one of bf16-mixed"):
            TrainConfig(precision=rejected)


@pytest.mark.parametrize("build, message", [
    (lambda: TrainConfig(loggers=["csv", "mlflow"]), "train.loggers[1]='mlflow': use one of csv, tensorboard, wandb"),
    (lambda: TrainConfig(compile="yes"), "train.compile='yes': use one of auto, true, false"),
    (lambda: TrainConfig(act_ckpt="no"), "train.act_ckpt must be true or false, got 'no'"),
    (lambda: TrainConfig(bogus=1), "unknown train key(s) train.bogus; known: seq_len, global_batch"),
    (lambda: DataConfig(train_tokens=1.5), "data.train_tokens must be an integer, got 1.5"),
    (lambda: DataConfig(heldout_fraction="x"), "data.heldout_fraction must be a number, got 'x'"),
    (lambda: AnalysisSettings(attention_lengths=[16, 1]), "analysis.attention_lengths[1] must be >= 2, got 1"),
    (lambda: ModelConfig.from_dict({"n_layers": 2, "d_model": 8, "n_heads": 2, "n_kv_heads": 2}),
     "model.d_ff is required (no default); add it"),
    (lambda: ModelConfig.from_dict({"n_layers": 2, "d_model": 8, "n_heads": 2, "n_kv_heads": 2, "d_ff": 0,
                                    "moe": {"n_experts": 2, "top_k": 1, "d_expert": 4, "h_e": 4}}),
     "unknown model.moe key(s) model.moe.h_e; known: n_experts, top_k, d_expert"),
])
def test_errors_are_one_line_naming_the_key(build, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        build()
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_integers_accept_yaml_spellings() -> None:
    """1e9 is a float in YAML 1.1 `1.0e+9` and a string as `1e9`; both are whole numbers."""
    assert DataConfig(train_tokens="1e9", max_chars=2.0e6).train_tokens == 10**9
    assert AnalysisSettings(ppl_tokens=1.0e7, attention_lengths=[16.0]).attention_lengths == (16,)
    assert TrainConfig(seq_len="10_000", val_tokens=0).seq_len == 10_000


def _nodes(node):
    yield node
    children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
    for child in children:
        if isinstance(child, (dict, list)):
            yield from _nodes(child)


def test_schema_file_is_yaml_with_the_generated_header() -> None:
    text = SCHEMA.read_text()
    assert text.startswith("# GENERATED") and yaml.safe_load(text)["type"] == "object"


def test_metric_names_are_the_configs() -> None:
    """groups.<g>.analyses accepts exactly the families metrics.registry computes, in its order."""
    from sparsecod.config.analysis import METRICS
    from sparsecod.metrics.registry import REGISTRY

    assert tuple(REGISTRY) == METRICS
    enum = workflow_schema()["$defs"]["group"]["properties"]["analyses"]["items"]["enum"]
    assert enum == list(METRICS)
