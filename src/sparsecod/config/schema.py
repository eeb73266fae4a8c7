"""workflow/schemas/config.schema.yaml, generated from the key definitions (sparsecod.config.keys).

    sparsecod schema > workflow/schemas/config.schema.yaml     (or: python -m sparsecod.config.schema)

Each section is pydantic's JSON schema of its class, cleaned for Snakemake's `validate`: no titles, and no
`default`s (validate would write them into the config, changing the rules' params); a key's default goes into
its description instead. tests/test_config_schema.py fails when the committed file differs from this output.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import yaml
from pydantic import TypeAdapter

from ..data.config import DataConfig
from ..experiments import GROUPS
from ..model.config import ModelConfig
from .analysis import AnalysisJobs, AnalysisSettings
from .train import TrainConfig
from .workflow import Evaluation, Group, LrSweep, Resources, RunKeys, Scale, SweepEntry

HEADER = """\
# GENERATED from the key definitions in src/sparsecod (sparsecod.config.keys) by
#   sparsecod schema > workflow/schemas/config.schema.yaml
# Do not edit: change the key's definition and regenerate (tests/test_config_schema.py compares the two).
"""
_BOUNDS = {"ge": "minimum", "gt": "exclusiveMinimum", "le": "maximum", "lt": "exclusiveMaximum"}
TRAIN_SETTINGS = {"$ref": "#/$defs/train_settings"}
NAME_PATTERN = {"pattern": "^[A-Za-z0-9_.-]+$"}


def section(cls: type) -> dict[str, Any]:
    """The JSON schema of one section class: its keys with type, bounds, description (and default there)."""
    raw = TypeAdapter(cls).json_schema()
    return _clean(raw, raw.get("$defs", {}))


def _clean(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_clean(x, defs) for x in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        return _clean(defs[node["$ref"].rpartition("/")[2]], defs)
    out = {k: ({p: _clean(v, defs) for p, v in v.items()} if k == "properties" else _clean(v, defs))
           for k, v in node.items() if k not in ("title", "$defs", "default")}
    if "type" in out or "anyOf" in out:  # bounds pydantic leaves unconverted on a union of validated types
        out = {_BOUNDS.get(k, k): v for k, v in out.items()}
    if out.get("additionalProperties") is True:
        del out["additionalProperties"]
    if "anyOf" in out:
        out = _merge_union(out)
    if "default" in node and "description" in out:
        out["description"] += f" (default {json.dumps(node['default'], ensure_ascii=False)})"
    first = [k for k in ("type", "enum") if k in out]
    last = [k for k in ("description",) if k in out]
    return {k: out[k] for k in first + [k for k in out if k not in first + last] + last}


def _merge_union(node: dict[str, Any]) -> dict[str, Any]:
    """anyOf of plain typed members (X | None, str | float) -> one node with a list of types."""
    members = node["anyOf"]
    if not all(isinstance(m, dict) and isinstance(m.get("type"), str) for m in members):
        return node
    merged: dict[str, Any] = {"type": [m["type"] for m in members]}
    for m in members:
        for k, v in m.items():
            if k != "type" and merged.setdefault(k, v) != v:
                return node
    rest = {k: v for k, v in node.items() if k != "anyOf"}
    return {_BOUNDS.get(k, k): v for k, v in {**merged, **rest}.items()}


def _keys_of(*classes: type) -> dict[str, Any]:
    """One object schema holding the keys of several classes, none required (settings that override others)."""
    props: dict[str, Any] = {}
    for cls in classes:
        props.update(section(cls)["properties"])
    return {"type": "object", "additionalProperties": False, "properties": props}


def _group() -> dict[str, Any]:
    node = section(Group)
    props = node["properties"]
    props["train"] = {**TRAIN_SETTINGS, "description": props["train"]["description"]}
    props["runs"] = {"type": "object", "minProperties": 1,
                     "additionalProperties": {"oneOf": [{"type": "null"}, TRAIN_SETTINGS]},
                     "description": props["runs"]["description"]}
    return node


def workflow_schema() -> dict[str, Any]:
    """The whole workflow config: every section, the groups of sparsecod.experiments.GROUPS."""
    analysis = _keys_of(AnalysisJobs, AnalysisSettings)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "sparsecod workflow config (config/config.yaml, config/mini.yaml, config/smoke.yaml)",
        "description": "Structure of a scale config. Cross-field rules (H divisible by H_kv, top-k <= experts, "
                       "budgets, known model and lr names) are checked by sparsecod.experiments.Registry, which "
                       "names the offending key.",
        "type": "object",
        "additionalProperties": False,
        "required": ["scale", "results", "data", "resources", "defaults", "models", "lr", "sweeps", "groups",
                     "analysis", "evaluation"],
        "$defs": {
            "train_settings": _keys_of(TrainConfig, RunKeys),
            "model": section(ModelConfig),
            "group": _group(),
        },
        "properties": {
            "scale": {"enum": list(Scale.__args__), "description": "label written into every run's run.yaml and "
                                                                  "the summary table"},
            "results": {"type": "string", "description": "output root (runs/, data/, sweeps/, figures/, tables/, "
                                                         "logs/)"},
            "data": section(DataConfig),
            "resources": section(Resources),
            "defaults": {**TRAIN_SETTINGS, "description": "training settings of every run (protocol §1.5)"},
            "models": {"type": "object", "minProperties": 1, "additionalProperties": {"$ref": "#/$defs/model"},
                       "description": "model shapes by name (protocol §1.2-§1.4); `sparsecod params` prints sizes"},
            "lr": {"type": "object",
                   "additionalProperties": {"oneOf": [{"type": "number", "exclusiveMinimum": 0}, section(LrSweep)]},
                   "description": "named learning rates: a number, or the winner of a sweep"},
            "sweeps": {"type": "object", "additionalProperties": section(SweepEntry),
                       "description": "LR sweeps by name (protocol Q1)"},
            "groups": {"type": "object", "additionalProperties": False, "required": list(GROUPS),
                       "properties": {g: {"$ref": "#/$defs/group"} for g in GROUPS},
                       "description": "experiment groups E1-E7 (protocol §3) and lns; every scale defines all"},
            "external": {"type": ["object", "null"], "propertyNames": NAME_PATTERN,
                         "additionalProperties": {"type": "string", "minLength": 1},
                         "description": "transformers LlamaForCausalLM checkpoint directories to analyse "
                                        "(name -> path), beyond the paper"},
            "analysis": {**analysis, "description": "sample sets and settings of the metric suite "
                                                    "(protocol §1.6, M3-M11)"},
            "evaluation": section(Evaluation),
        },
    }


def schema_yaml() -> str:
    """The schema file's text."""
    return HEADER + yaml.safe_dump(workflow_schema(), sort_keys=False, allow_unicode=True, width=120)


def main() -> int:
    sys.stdout.write(schema_yaml())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
