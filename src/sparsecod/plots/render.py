"""`sparsecod render`: dispatch figure, table and claims names to their renderers (protocol §4, §5)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from .data import Results
from .inventory import BEYOND, CLAIMS, FIGURES, ITEMS, TABLES


def render_items(names: Sequence[str], results_dir: str | os.PathLike, summaries: Sequence[str | os.PathLike],
                 ref_dir: str | os.PathLike) -> list[Path]:
    """Render every name (figN, tableN, claims) into `results_dir`; returns the written files."""
    unknown = [n for n in names if n not in ITEMS]
    if unknown:
        raise ValueError(f"unknown name(s) {unknown}: use fig1 … fig{len(FIGURES)}, table1 … table{len(TABLES)} "
                         "or claims (beyond the paper: figX1, tableX1, claimsX)")
    res = Results.load(results_dir, summaries)
    out_dir, ref_dir = Path(results_dir), Path(ref_dir)
    written: list[Path] = []
    for name in names:
        if name in FIGURES or name == "figX1":
            from .figures import render

            written += render(name, res, ref_dir, out_dir / ITEMS[name].folder)
        elif name == "tableX1":
            from .tables import render_lns_table

            written += render_lns_table(res, out_dir / BEYOND[name].folder)
        elif name == "claimsX":
            from .claims import write_beyond_claims

            paths = [Path(p) for p in BEYOND[name].files(str(out_dir))]  # .md, .csv
            write_beyond_claims(res, ref_dir, *paths)
            written += paths
        elif name in TABLES:
            from .tables import render_table

            written += render_table(name, res, ref_dir, out_dir / TABLES[name].folder)
        else:
            from .claims import write_claims

            paths = [Path(p) for p in CLAIMS.files(str(out_dir))]  # .md, .csv
            write_claims(res, ref_dir, *paths)
            written += paths
    return written
