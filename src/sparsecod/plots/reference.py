"""The paper's reported numbers (protocol §5) from `config/reference/<stem>.csv`; each file has a `source` column."""

from __future__ import annotations

from pathlib import Path

import pandas as pd


def load_reference(ref_dir: Path, stem: str) -> pd.DataFrame:
    """`<ref_dir>/<stem>.csv` as a DataFrame; a missing file is a FileNotFoundError naming it."""
    path = Path(ref_dir) / f"{stem}.csv"
    if not path.is_file():
        raise FileNotFoundError(f"reference table {path} is missing: pass the repository's config/reference "
                                "directory (--reference)")
    return pd.read_csv(path)
