"""Stock lm-eval tasks on local data (protocol M12): offline group YAMLs and the offline guard.

The task definitions (prompts, splits, metrics, MMLU's size-weighted aggregate) stay the stock ones;
only where the data comes from changes. For each requested task or group `<name>` a group
`sparsecod_offline_<name>` is written into an include_path that references the registered task/group
and overrides `dataset_path` (plus `training_split: null` for tasks, whose stock train split is absent
locally). Result keys keep the stock names (`arc_easy`, `mmlu`, `mmlu_stem`, ...).

Local layout (HF `save_to_disk` shards with a README `configs:` block, see
`datasets.load_dataset(<dir>, <config>)`): the stock Hub id, or a known short folder name, under the data
directory, e.g. `<data>/ai2_arc` (or `<data>/allenai/ai2_arc`) for ARC, `<data>/hellaswag` for HellaSwag,
`<data>/hails/mmlu_no_train` (or `<data>/cais/mmlu`) for MMLU. ARC is scored on its test split and
HellaSwag on validation, as the stock tasks do; MMLU on test.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from ..data.network import OFFLINE_VARS, OfflineError, offline_reason

DATA_ENV = "SPARSECOD_EVAL_DATA"
DEFAULT_TASKS = ("mmlu", "arc_easy", "arc_challenge", "hellaswag")
GROUP_PREFIX = "sparsecod_offline_"

# stock Hub dataset -> folders tried under the local data directory (first match wins)
LOCAL_FOLDERS = {
    "allenai/ai2_arc": ("allenai/ai2_arc", "ai2_arc"),
    "Rowan/hellaswag": ("Rowan/hellaswag", "hellaswag"),
    "cais/mmlu": ("cais/mmlu", "hails/mmlu_no_train", "mmlu"),
}
MMLU_GROUPS = ("mmlu", "mmlu_stem", "mmlu_humanities", "mmlu_other", "mmlu_social_sciences")
_MMLU_SUBJECT = re.compile(r"^mmlu_([a-z_]+)$")


@dataclass(frozen=True)
class OfflineTask:
    """A stock task or group that can run on local data: kind 'task' | 'group', its stock Hub dataset."""

    name: str
    kind: str
    hub_dataset: str


def offline_task(name: str) -> OfflineTask | None:
    """The local-data description of a stock task/group name, or None when it has none."""
    if name in ("arc_easy", "arc_challenge"):
        return OfflineTask(name, "task", "allenai/ai2_arc")
    if name == "hellaswag":
        return OfflineTask(name, "task", "Rowan/hellaswag")
    if name in MMLU_GROUPS:
        return OfflineTask(name, "group", "cais/mmlu")
    if _MMLU_SUBJECT.match(name):
        return OfflineTask(name, "task", "cais/mmlu")
    return None


def local_dataset_dir(data_dir: Path, hub_dataset: str) -> Path:
    """The folder of `hub_dataset` under `data_dir`; FileNotFoundError listing what was tried."""
    tried = [data_dir / f for f in LOCAL_FOLDERS.get(hub_dataset, (hub_dataset,))]
    for path in tried:
        if path.is_dir():
            return path.resolve()
    raise FileNotFoundError(
        f"evaluation.data_dir={data_dir}: no local copy of {hub_dataset}; looked for "
        + ", ".join(str(p) for p in tried)
        + " (HF save_to_disk shards with a README configs block)"
    )


def resolve_data_dir(data_dir: str | os.PathLike | None) -> Path | None:
    """The local evaluation data directory: the argument, else $SPARSECOD_EVAL_DATA, else None (use the Hub)."""
    value = data_dir if data_dir not in (None, "") else os.environ.get(DATA_ENV) or None
    if value is None:
        return None
    path = Path(value).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(
            f"evaluation data directory {value!r} (evaluation.data_dir / --eval-data / ${DATA_ENV}) does not exist"
        )
    return path.resolve()


def stock_data_problem(data_dir: str | os.PathLike | None) -> str | None:
    """Why the stock tasks cannot get their data here, or None: a local directory (the argument, else
    $SPARSECOD_EVAL_DATA) or a reachable Hub is enough. FileNotFoundError when a named directory is missing."""
    if resolve_data_dir(data_dir) is not None:
        return None
    reason = offline_reason()
    return None if reason is None else f"no evaluation.data_dir or ${DATA_ENV}, and the Hugging Face Hub: {reason}"


def require_hub(tasks: Sequence[str]) -> None:
    """Fail at once (OfflineError) when the stock Hub datasets are needed but the Hub is unreachable."""
    reason = offline_reason()
    if reason is not None:
        raise OfflineError(
            f"lm-eval tasks {', '.join(tasks)} need the Hugging Face Hub for their datasets, but {reason}. "
            "Point the evaluation at local copies instead: config key evaluation.data_dir "
            f"(`sparsecod evaluate --eval-data DIR` or ${DATA_ENV}), e.g. a directory holding ai2_arc/, hellaswag/ "
            "and hails/mmlu_no_train/ as HF save_to_disk shards"
        )


def write_offline_groups(tasks: Sequence[str], data_dir: Path, include_dir: Path) -> list[str]:
    """Write one group YAML per task into `include_dir`; returns the group names to evaluate (same order)."""
    unknown = [t for t in tasks if offline_task(t) is None]
    if unknown:
        raise ValueError(
            f"task(s) {unknown} have no local-data mapping; with evaluation.data_dir set, the supported tasks are "
            f"arc_easy, arc_challenge, hellaswag, {', '.join(MMLU_GROUPS)} and mmlu_<subject> "
            "(set evaluation.data_dir to '' to use the stock Hub datasets online)"
        )
    include_dir.mkdir(parents=True, exist_ok=True)
    groups = []
    for name in tasks:
        spec = offline_task(name)
        assert spec is not None
        entry: dict = {spec.kind: name, "dataset_path": str(local_dataset_dir(data_dir, spec.hub_dataset))}
        if spec.kind == "task":
            entry["training_split"] = None  # the stock train split is not stored locally (KeyError: 'train')
        group = GROUP_PREFIX + name
        doc = {"group": group, "task": [entry]}
        (include_dir / f"{group}.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
        groups.append(group)
    return groups


@contextlib.contextmanager
def hf_offline() -> Iterator[None]:
    """HF_HUB_OFFLINE=1 / HF_DATASETS_OFFLINE=1 for the duration (env vars and, when already imported, the
    flags `huggingface_hub` and `datasets` read them into); restored afterwards."""
    saved_env = {var: os.environ.get(var) for var in OFFLINE_VARS}
    flags = [("huggingface_hub.constants", "HF_HUB_OFFLINE"), ("datasets.config", "HF_HUB_OFFLINE"),
             ("datasets.config", "HF_DATASETS_OFFLINE")]
    saved_flags = []
    for var in OFFLINE_VARS:
        os.environ[var] = "1"
    for module, attr in flags:
        mod = sys.modules.get(module)
        if mod is not None and hasattr(mod, attr):
            saved_flags.append((mod, attr, getattr(mod, attr)))
            setattr(mod, attr, True)
    try:
        yield
    finally:
        for var, value in saved_env.items():
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value
        for mod, attr, value in saved_flags:
            setattr(mod, attr, value)
