"""Document sources for `data.corpus` (protocol §1.1) and the document-level held-out rule (protocol §1.6 CHOICE).

Sources, each yielding document texts in a fixed order:
* `fineweb-edu`: `load_dataset("HuggingFaceFW/fineweb-edu", name="sample-100BT", split="train", streaming=True)`,
  field `text`. Without network it fails at once (no retry loop) naming `data.corpus`.
* a local path, directory or glob of `.txt` / `.jsonl` / `.json` / `.parquet` files, read in sorted path order with
  the matching `datasets` builder (streaming, so nothing is cached on disk). jsonl/json/parquet: field
  `data.text_field`; `.txt`: one document per blank-line-separated block.
* `builtin`: prose generated from the local Python standard library (see builtin.py), no download.
Empty documents are skipped; `data.max_chars` stops the stream once that many characters were read.

Held-out rule: a document is held out iff the first 8 bytes of sha256(text), read as a fraction of 2^64, are below
`data.heldout_fraction`. It depends on the text only, so the split is the same for every source order, identical
documents always land in the same split, and held-out documents are never used for training.
"""

from __future__ import annotations

import glob
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

from ..config.errors import ConfigError
from .config import PAPER_CORPUS, DataConfig
from .network import OfflineError, offline_reason

FINEWEB = {"path": "HuggingFaceFW/fineweb-edu", "name": "sample-100BT", "split": "train", "field": "text"}
BUILDERS = {".txt": "text", ".jsonl": "json", ".json": "json", ".parquet": "parquet"}
SPLITS = ("train", "heldout")
_FINEWEB_WHAT = f"data.corpus={PAPER_CORPUS!r} ({FINEWEB['path']}, {FINEWEB['name']})"
_BATCH = 1000


def is_heldout(text: str, fraction: float) -> bool:
    """The held-out rule of the module docstring (protocol §1.6 CHOICE)."""
    head = hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()[:8]
    return int.from_bytes(head, "big") < fraction * 2**64


def split_of(text: str, fraction: float) -> str:
    return "heldout" if is_heldout(text, fraction) else "train"


def corpus_kind(corpus: str) -> str:
    """'fineweb-edu', 'builtin' or 'local'."""
    return corpus if corpus in (PAPER_CORPUS, "builtin") else "local"


def local_files(corpus: str) -> list[Path]:
    """Files named by a `data.corpus` path, directory (searched recursively) or glob, sorted by path."""
    path = Path(corpus).expanduser()
    if path.is_dir():
        files = [p for p in path.rglob("*") if p.is_file() and p.suffix in BUILDERS]
    elif path.is_file():
        files = [path]
    else:
        files = [Path(p) for p in glob.glob(os.path.expanduser(corpus), recursive=True) if Path(p).is_file()]
    if not files:
        raise ConfigError(f"data.corpus={corpus!r} matches no file; give 'fineweb-edu', 'builtin', or a path, "
                          f"directory or glob of local {'/'.join(BUILDERS)} files")
    unknown = sorted({p.suffix for p in files} - set(BUILDERS))
    if unknown:
        raise ConfigError(f"data.corpus={corpus!r} matches files with unsupported suffix(es) {unknown}; "
                          f"supported: {sorted(BUILDERS)}")
    return sorted((p.resolve() for p in files), key=str)


def describe_source(cfg: DataConfig) -> dict:
    """What the documents are read from (stored in meta.json; part of the shard request). No network needed."""
    kind = corpus_kind(cfg.corpus)
    if kind == "builtin":
        from .builtin import describe_builtin

        source = describe_builtin()
    elif kind == PAPER_CORPUS:
        source = {"kind": "hub", **FINEWEB}
    else:
        files = local_files(cfg.corpus)
        source = {"kind": "local", "corpus": cfg.corpus, "field": cfg.text_field,
                  "files": [{"path": str(p), "bytes": p.stat().st_size, "mtime_ns": p.stat().st_mtime_ns}
                            for p in files]}
    return {**source, "max_chars": cfg.max_chars}


def iter_documents(cfg: DataConfig, workers: int = 1) -> Iterator[str]:
    """Every non-empty document of `data.corpus`, in stream order, up to `data.max_chars` characters."""
    kind = corpus_kind(cfg.corpus)
    if kind == "builtin":
        from .builtin import iter_builtin_documents

        docs = iter_builtin_documents(workers)
    elif kind == PAPER_CORPUS:
        docs = _fineweb_documents()
    else:
        docs = _local_documents(cfg.corpus, cfg.text_field)
    total = 0
    try:
        for text in docs:
            if not text:
                continue
            yield text
            total += len(text)
            if cfg.max_chars is not None and total >= cfg.max_chars:
                return
    finally:
        docs.close()


def iter_split(cfg: DataConfig, split: str, workers: int = 1) -> Iterator[str]:
    """The documents of one split ('train' or 'heldout'), in stream order."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    docs = iter_documents(cfg, workers)
    try:
        yield from (t for t in docs if split_of(t, cfg.heldout_fraction) == split)
    finally:
        docs.close()


def check_hub_reachable(what: str) -> None:
    """Raise OfflineError at once (naming data.corpus) when the Hub cannot be reached."""
    reason = offline_reason()
    if reason is not None:
        raise OfflineError(
            f"{what} is streamed from the Hugging Face Hub, which is unreachable ({reason}). Without network set "
            f"data.corpus to a path or glob of local .txt/.jsonl/.json/.parquet files (e.g. downloaded FineWeb-Edu "
            f"parquet shards; the text column is data.text_field), or to 'builtin' for the offline default corpus."
        )


def check_corpus_reachable(cfg: DataConfig) -> None:
    """Fail at once (OfflineError naming data.corpus) when `cfg.corpus` is streamed from an unreachable Hub."""
    if corpus_kind(cfg.corpus) == PAPER_CORPUS:
        check_hub_reachable(_FINEWEB_WHAT)


def _fineweb_documents() -> Iterator[str]:
    check_hub_reachable(_FINEWEB_WHAT)
    import datasets

    try:
        ds = datasets.load_dataset(FINEWEB["path"], name=FINEWEB["name"], split=FINEWEB["split"], streaming=True)
    except ConnectionError as err:
        raise OfflineError(f"cannot load {FINEWEB['path']} ({err}); set data.corpus to local files "
                           f"(path or glob of .parquet/.jsonl/.txt) when the Hub is unreachable") from err
    yield from _dataset_texts(ds, FINEWEB["field"], FINEWEB["path"])


def utf8_problem(path: Path, corpus: str, offset: int | None = None) -> str:
    """The one-line error for a corpus file that is not UTF-8 text."""
    where = f" (invalid byte at offset {offset})" if offset is not None else ""
    return (f"data.corpus={corpus!r}: {path} is not UTF-8 text{where}; convert it (e.g. `iconv -f latin1 -t utf-8`) "
            "or leave it out of data.corpus")


def _local_documents(corpus: str, field: str) -> Iterator[str]:
    files = local_files(corpus)
    import datasets

    for path in files:
        if path.stat().st_size == 0:  # the json builder fails on one with an internal error
            raise ConfigError(f"data.corpus={corpus!r}: {path} is empty; remove it or point data.corpus at files "
                              "with documents")
        builder = BUILDERS[path.suffix]
        kwargs = {"sample_by": "paragraph"} if builder == "text" else {}
        ds = datasets.load_dataset(builder, data_files=[str(path)], split="train", streaming=True, **kwargs)
        try:
            if builder == "text":
                yield from (t.strip("\n") for t in _dataset_texts(ds, "text", str(path)))
            else:
                yield from _dataset_texts(ds, field, str(path))
        except UnicodeDecodeError:
            raise ConfigError(utf8_problem(path, corpus)) from None


def _dataset_texts(ds, field: str, where: str) -> Iterator[str]:
    batches = iter(ds.iter(batch_size=_BATCH))
    try:
        for batch in batches:
            if field not in batch:
                raise ConfigError(f"{where} has no column {field!r} (columns: {sorted(batch)}); "
                                  f"set data.text_field to the column holding the document text")
            for text in batch[field]:
                if text:
                    if not isinstance(text, str):
                        raise ConfigError(f"{where}: column {field!r} holds {type(text).__name__}, not text; "
                                          f"set data.text_field to the column holding the document text")
                    yield text
    finally:
        close = getattr(batches, "close", None)
        if close is not None:
            close()
