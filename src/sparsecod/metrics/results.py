"""Metric outputs: `<run_dir>/analysis/<metric>.json` (scalars), `<metric>.parquet` (tidy rows), `.npy` arrays.

Every file is written atomically (temp file in the same directory, then rename), so a crashed job
leaves either the previous file or none (DESIGN.md).
"""

from __future__ import annotations

import io
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..fileio import write_bytes_atomic, write_json_atomic, write_parquet_atomic


@dataclass
class MetricResult:
    """scalars: JSON-able summary (spec names); table: tidy per-layer/per-pair rows; arrays: name -> ndarray."""

    scalars: dict[str, Any]
    table: pd.DataFrame | None = None
    arrays: dict[str, np.ndarray] = field(default_factory=dict)


def _clean(value: Any) -> Any:
    """numpy/torch scalars -> Python; NaN/inf -> None (strict JSON)."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_result(analysis_dir: str | os.PathLike, name: str, result: MetricResult, meta: dict[str, Any]) -> list[Path]:
    """Write `<name>.npy`-style arrays and `<name>.parquet` first, the JSON (which names them) last."""
    out = Path(analysis_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    files: dict[str, str] = {}
    for key, array in result.arrays.items():
        buf = io.BytesIO()
        np.save(buf, np.asarray(array), allow_pickle=False)
        path = write_bytes_atomic(out / f"{name}_{key}.npy", buf.getvalue())
        files[key] = path.name
        written.append(path)
    if result.table is not None:
        path = write_parquet_atomic(out / f"{name}.parquet", result.table)
        files["table"] = path.name
        written.append(path)
    doc = {"metric": name, **meta, **result.scalars, "files": files}
    written.append(write_json_atomic(out / f"{name}.json", _clean(doc)))
    return written
