"""Atomic writes for every output of the pipeline (DESIGN: a crashed job leaves the old file or none).

Files go to a temporary name in the same directory, are fsynced and renamed over the target; directories
are built under a temporary name and swapped in. Results are shared on clusters, so files are 0644 and
directories 0755 (mkstemp/mkdtemp would leave 0600/0700).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` so that readers see either the old file or the complete new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json_atomic(path: str | os.PathLike, obj: Any, **json_kwargs: Any) -> Path:
    """JSON (indent 2, sorted keys unless overridden) written atomically."""
    json_kwargs = {"indent": 2, "sort_keys": True, **json_kwargs}
    return write_bytes_atomic(path, (json.dumps(obj, **json_kwargs) + "\n").encode())


def write_parquet_atomic(path: str | os.PathLike, table: pd.DataFrame) -> Path:
    """A DataFrame as parquet (no index) written atomically."""
    buf = io.BytesIO()
    table.to_parquet(buf, index=False)
    return write_bytes_atomic(path, buf.getvalue())


def write_csv_atomic(path: str | os.PathLike, table: pd.DataFrame) -> Path:
    """A DataFrame as CSV (no index) written atomically."""
    return write_bytes_atomic(path, table.to_csv(index=False).encode())


@contextlib.contextmanager
def replace_dir_atomic(path: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary directory beside `path`; on success it replaces `path` (0755)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        yield tmp
        tmp.chmod(0o755)
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
