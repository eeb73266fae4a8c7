"""Token shards: the corpus tokenized once into flat train / held-out token streams (protocol §1.1, §1.6).

Layout of a shard directory:
    train.bin, heldout.bin   flat little-endian uint16 (vocab <= 65535) or uint32 token ids; each document is
                             encoded without special tokens and followed by EOS (unless already last), documents
                             concatenated in stream order (protocol §1.1); a split stops at its token cap.
    tokenizer.json           copy of the tokenizer used
    meta.json                {"dtype", "eos_id", "vocab_size", "tokenizer_sha256", "splits": {split: {"tokens",
                             "documents", "cap", "exhausted"}}, "source", "heldout_rule", "request", "config",
                             "throughput_tokens_per_s", "seconds", "created", ...}; written last.
    .<split>.done.json       per-split completion record (for resuming), .<split>.bin.partial while writing.

The held-out split holds the documents selected by `corpus.is_heldout` (protocol §1.6 CHOICE), never used for training.
Idempotent: a complete directory whose meta.json records the same request is left untouched. Resumable: splits
are written under temporary names and renamed when complete; a rerun keeps finished splits and restarts the
others. `workers` processes tokenize batches of documents; the output does not depend on their number.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .. import __version__
from ..config.errors import ConfigError
from ..fileio import file_sha256, write_bytes_atomic, write_json_atomic
from .config import PAPER_CORPUS, DataConfig
from .corpus import (SPLITS, check_corpus_reachable, corpus_kind, describe_source, iter_documents, iter_split,
                     split_of)
from .pool import process_pool
from .tokenizer import eos_id, load_tokenizer, local_tokenizer_file, resolve_tokenizer, tokenizer_kind, vocab_size

log = logging.getLogger(__name__)

FORMAT = 1
META = "meta.json"
TOKENIZER = "tokenizer.json"
BATCH_DOCS = 64

__all__ = ["BuildResult", "build_shards", "open_tokens", "read_meta", "shard_request", "token_dtype"]


@dataclasses.dataclass(frozen=True)
class BuildResult:
    """What `build_shards` did: `up_to_date` when nothing had to be written; `seconds` of the whole call."""

    out_dir: Path
    up_to_date: bool
    meta: dict
    new_tokens: int
    seconds: float

    def summary(self) -> str:
        splits = ", ".join(f"{s} {self.meta['splits'][s]['tokens']:,} tokens" for s in SPLITS)
        if self.up_to_date:
            return f"{self.out_dir}: up to date ({splits})"
        return (f"{self.out_dir}: {splits}; tokenized {self.new_tokens:,} tokens at "
                f"{self.meta['throughput_tokens_per_s']:,.0f} tokens/s ({self.seconds:.1f} s in all)")


def token_dtype(vocab: int) -> np.dtype:
    """uint16 when every id fits (vocab <= 65535), else uint32; little-endian."""
    return np.dtype("<u2") if vocab <= 65535 else np.dtype("<u4")


def read_meta(shard_dir: str | os.PathLike) -> dict:
    path = Path(shard_dir) / META
    if not path.is_file():
        raise FileNotFoundError(f"{shard_dir} is not a complete shard directory ({META} is missing); "
                                f"build it with `sparsecod tokenize --config <yaml> --out {shard_dir}`")
    return json.loads(path.read_text())


def open_tokens(shard_dir: str | os.PathLike, split: str) -> np.memmap:
    """Read-only 1-D memmap of a split's token ids ('train' or 'heldout'); dtype from meta.json."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    meta = read_meta(shard_dir)
    path = Path(shard_dir) / f"{split}.bin"
    dtype = np.dtype(meta["dtype"]).newbyteorder("<")
    expected = meta["splits"][split]["tokens"] * dtype.itemsize
    if not path.is_file() or path.stat().st_size != expected:
        raise ValueError(f"{path} is missing or does not hold the {meta['splits'][split]['tokens']} tokens "
                         f"{META} records; rebuild with `sparsecod tokenize`")
    return np.memmap(path, dtype=dtype, mode="r")


def shard_request(cfg: DataConfig) -> dict:
    """Everything that determines the shard bytes (not `workers`); meta.json stores it for the up-to-date check."""
    kind = tokenizer_kind(cfg.tokenizer)
    tokenizer: dict = {"spec": cfg.tokenizer, "kind": kind}
    if kind == "file":
        tokenizer["sha256"] = file_sha256(local_tokenizer_file(cfg.tokenizer))
    elif kind == "bpe":
        tokenizer["bpe_chars"] = cfg.bpe_chars
    request = {"format": FORMAT, "source": describe_source(cfg), "tokenizer": tokenizer,
               "heldout_fraction": cfg.heldout_fraction,
               "caps": {"train": cfg.train_tokens, "heldout": cfg.heldout_tokens}}
    return json.loads(json.dumps(request))


def build_shards(
    cfg: DataConfig,
    out_dir: str | os.PathLike,
    *,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
    batch_docs: int = BATCH_DOCS,
) -> BuildResult:
    """Tokenize `cfg.corpus` with `cfg.tokenizer` into `out_dir` (layout in the module docstring).

    cache_dir: where `bpe:<V>` tokenizers are cached (default: tokenizer.default_cache_dir()).
    """
    start = time.perf_counter()
    out = Path(out_dir)
    if corpus_kind(cfg.corpus) == PAPER_CORPUS and cfg.train_tokens is None:
        raise ConfigError("data.train_tokens must be set for the streamed fineweb-edu corpus (~100B tokens)")
    request = shard_request(cfg)
    meta = _complete_meta(out, request)
    if meta is not None:
        return BuildResult(out, True, meta, 0, time.perf_counter() - start)

    check_corpus_reachable(cfg)
    out.mkdir(parents=True, exist_ok=True)
    (out / META).unlink(missing_ok=True)
    tok_path = resolve_tokenizer(cfg.tokenizer, training_texts=lambda: _bpe_texts(cfg), cache_dir=cache_dir)
    tok_sha = file_sha256(tok_path)
    if not (out / TOKENIZER).is_file() or file_sha256(out / TOKENIZER) != tok_sha:
        write_bytes_atomic(out / TOKENIZER, tok_path.read_bytes())
    tok = load_tokenizer(out / TOKENIZER)
    eos, vocab = eos_id(tok), vocab_size(tok)
    dtype = token_dtype(vocab)

    caps = {"train": cfg.train_tokens, "heldout": cfg.heldout_tokens}
    keys = {s: {"request": {**request, "caps": {s: caps[s]}}, "tokenizer_sha256": tok_sha} for s in SPLITS}
    stats = {s: _finished_split(out, s, keys[s], dtype) for s in SPLITS}
    todo = [s for s in SPLITS if stats[s] is None]
    new_tokens, t_tok = 0, time.perf_counter()
    if todo:
        for s in todo:
            (out / f"{s}.bin").unlink(missing_ok=True)
            _done_file(out, s).unlink(missing_ok=True)
        stats.update(_tokenize(cfg, out, todo, caps, keys, out / TOKENIZER, eos, dtype, progress, batch_docs))
        new_tokens = sum(stats[s]["tokens"] for s in todo)
    t_tok = time.perf_counter() - t_tok
    for s in SPLITS:
        if stats[s]["tokens"] == 0:
            raise ConfigError(f"the {s} split of data.corpus={cfg.corpus!r} got no tokens: raise data.max_chars "
                              f"(or use a bigger corpus) or adjust data.heldout_fraction={cfg.heldout_fraction}")
    meta = {
        "format": FORMAT, "dtype": dtype.name, "eos_id": eos, "vocab_size": vocab, "tokenizer_sha256": tok_sha,
        "tokenizer": cfg.tokenizer,
        "splits": {s: {"tokens": stats[s]["tokens"], "documents": stats[s]["documents"], "cap": caps[s],
                       "exhausted": stats[s]["exhausted"]} for s in SPLITS},
        "source": request["source"],
        "heldout_rule": {"kind": "sha256(text)[:8] / 2**64 < fraction", "fraction": cfg.heldout_fraction},
        "request": request, "config": cfg.to_dict(),
        "throughput_tokens_per_s": new_tokens / t_tok if new_tokens else 0.0,
        "seconds": round(time.perf_counter() - start, 3),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "sparsecod": __version__,
    }
    write_json_atomic(out / META, meta)
    return BuildResult(out, False, meta, new_tokens, time.perf_counter() - start)


def _complete_meta(out: Path, request: dict) -> dict | None:
    """meta.json if `out` is a complete build of `request` (same request, files of the recorded sizes)."""
    try:
        meta = json.loads((out / META).read_text())
    except (OSError, ValueError):
        return None
    if meta.get("request") != request or not (out / TOKENIZER).is_file():
        return None
    if file_sha256(out / TOKENIZER) != meta.get("tokenizer_sha256"):
        return None
    itemsize = np.dtype(meta["dtype"]).itemsize
    for s in SPLITS:
        path = out / f"{s}.bin"
        if not path.is_file() or path.stat().st_size != meta["splits"][s]["tokens"] * itemsize:
            return None
    return meta


def _done_file(out: Path, split: str) -> Path:
    return out / f".{split}.done.json"


def _finished_split(out: Path, split: str, key: dict, dtype: np.dtype) -> dict | None:
    """The completion record of `split` if an earlier run finished it for the same key (resume)."""
    try:
        record = json.loads(_done_file(out, split).read_text())
    except (OSError, ValueError):
        return None
    path = out / f"{split}.bin"
    if record.get("key") != key or not path.is_file() or path.stat().st_size != record["tokens"] * dtype.itemsize:
        return None
    return record


def _bpe_texts(cfg: DataConfig) -> list[str]:
    """Training documents for a bpe:<V> tokenizer: the first `data.bpe_chars` characters of the train split."""
    texts, total = [], 0
    docs = iter_split(cfg, "train", cfg.workers)
    try:
        for text in docs:
            texts.append(text)
            total += len(text)
            if total >= cfg.bpe_chars:
                break
    finally:
        docs.close()
    return texts


class _SplitWriter:
    """Appends token batches to `.<split>.bin.partial` up to the cap; `finish` renames it to `<split>.bin`."""

    def __init__(self, out: Path, split: str, cap: int | None, key: dict) -> None:
        self.out, self.split, self.cap, self.key = out, split, cap, key
        self.partial = out / f".{split}.bin.partial"
        self.file = open(self.partial, "wb")
        self.tokens = self.documents = 0
        self.closed = self.exhausted = False

    def write(self, ids: np.ndarray, lengths: np.ndarray) -> int:
        if self.cap is not None and self.tokens + len(ids) >= self.cap:
            keep = self.cap - self.tokens
            starts = np.cumsum(lengths) - lengths
            self.documents += int(np.searchsorted(starts, keep, side="left"))
            ids = ids[:keep]
        else:
            self.documents += len(lengths)
        self.file.write(ids.tobytes())
        self.tokens += len(ids)
        if self.cap is not None and self.tokens >= self.cap:
            self.finish(exhausted=False)
        return len(ids)

    def finish(self, exhausted: bool) -> None:
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        os.replace(self.partial, self.out / f"{self.split}.bin")
        write_json_atomic(_done_file(self.out, self.split), {"key": self.key, "tokens": self.tokens,
                                                            "documents": self.documents, "exhausted": exhausted})
        self.closed, self.exhausted = True, exhausted
        if exhausted and self.cap is not None:
            log.warning("corpus exhausted: %s split has %d of the %d tokens asked for", self.split, self.tokens,
                        self.cap)

    def abort(self) -> None:
        if not self.closed:
            self.file.close()
            self.partial.unlink(missing_ok=True)
            self.closed = True

    def record(self) -> dict:
        return {"tokens": self.tokens, "documents": self.documents, "exhausted": self.exhausted}


def _tokenize(cfg: DataConfig, out: Path, todo: list[str], caps: dict, keys: dict, tok_path: Path, eos: int,
              dtype: np.dtype, progress: bool, batch_docs: int) -> dict[str, dict]:
    """Stream the corpus once, tokenizing the documents of the unfinished splits in `todo`, in order."""
    writers = {s: _SplitWriter(out, s, caps[s], keys[s]) for s in todo}
    workers = cfg.workers
    pool = process_pool(workers, _init_worker, (str(tok_path), eos, dtype.str, True)) if workers > 1 else None
    if pool is None:
        _init_worker(str(tok_path), eos, dtype.str, False)
    pending: deque[tuple[str, Future | tuple]] = deque()
    batches: dict[str, list[str]] = {s: [] for s in todo}
    total = None if any(caps[s] is None for s in todo) else sum(caps[s] for s in todo)
    bar = tqdm(total=total, unit="tok", unit_scale=True, desc=f"tokenize {out.name}", disable=not progress)

    def submit(split: str) -> None:
        texts, batches[split] = batches[split], []
        pending.append((split, pool.submit(_encode, texts) if pool is not None else _encode(texts)))

    def drain(limit: int) -> None:
        while len(pending) > limit:
            split, job = pending.popleft()
            ids, lengths = job.result() if isinstance(job, Future) else job
            if not writers[split].closed:
                bar.update(writers[split].write(ids, lengths))

    docs: Iterator[str] = iter_documents(cfg, workers)
    try:
        for text in docs:
            split = split_of(text, cfg.heldout_fraction)
            if split not in writers or writers[split].closed:
                if all(w.closed for w in writers.values()):
                    break
                continue
            batches[split].append(text)
            if len(batches[split]) >= batch_docs:
                submit(split)
                drain(2 * workers)
        else:
            for split in todo:
                if batches[split] and not writers[split].closed:
                    submit(split)
            drain(0)
            for w in writers.values():
                if not w.closed:
                    w.finish(exhausted=True)
        return {s: writers[s].record() for s in todo}
    finally:
        docs.close()
        bar.close()
        for w in writers.values():
            w.abort()
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


_WORKER: dict = {}


def _init_worker(tok_path: str, eos: int, dtype: str, single_threaded: bool) -> None:
    if single_threaded:  # one process per core already; no nested Rust thread pools
        os.environ["TOKENIZERS_PARALLELISM"] = "false"
    _WORKER.update(tok=load_tokenizer(tok_path), eos=eos, dtype=np.dtype(dtype))


def _encode(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Token ids of the documents, each followed by EOS unless already last (protocol §1.1); and per-document lengths."""
    eos = _WORKER["eos"]
    flat: list[int] = []
    lengths = np.empty(len(texts), dtype=np.int64)
    for i, enc in enumerate(_WORKER["tok"].encode_batch(texts, add_special_tokens=False)):
        ids = enc.ids
        flat.extend(ids)
        if not ids or ids[-1] != eos:
            flat.append(eos)
        lengths[i] = len(ids) + (not ids or ids[-1] != eos)
    return np.array(flat, dtype=_WORKER["dtype"]), lengths
