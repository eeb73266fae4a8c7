"""Token shards (issue 3 item 3; protocol §1.1, §1.6): EOS per document, disjoint splits, caps, reproducibility,
idempotence, resumption, and the shard contract read by training."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from _data_testutil import NEOX, needs_neox, split_stream, synthetic_docs, write_jsonl

import sparsecod.data.shards as shards
from sparsecod.data.config import DataConfig
from sparsecod.data.corpus import is_heldout
from sparsecod.data.shards import build_shards, open_tokens, read_meta, token_dtype
from sparsecod.data.tokenizer import load_tokenizer
from sparsecod.model.config import ConfigError

pytestmark = needs_neox
EOS = 50279


@pytest.fixture
def corpus(tmp_path):
    docs = synthetic_docs(400)
    docs[5] = docs[5] + "<|endoftext|>"  # already ends with EOS: must not get a second one
    return docs, write_jsonl(tmp_path / "corpus.jsonl", docs)


def _cfg(path, **kw) -> DataConfig:
    base = dict(corpus=str(path), tokenizer=str(NEOX), train_tokens=None, heldout_tokens=100_000,
                heldout_fraction=0.2, workers=1)
    return DataConfig(**{**base, **kw})


def _bytes(d):
    return {f: (d / f).read_bytes() for f in ("train.bin", "heldout.bin", "tokenizer.json")}


def test_full_build_layout_eos_and_disjoint_splits(tmp_path, corpus) -> None:
    docs, path = corpus
    res = build_shards(_cfg(path), tmp_path / "s", progress=False, batch_docs=16)
    out = res.out_dir
    assert not res.up_to_date
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        "heldout.bin", "meta.json", "tokenizer.json", "train.bin"]
    meta = read_meta(out)
    assert (meta["dtype"], meta["eos_id"], meta["vocab_size"]) == ("uint16", EOS, 50280)
    assert (out / "tokenizer.json").read_bytes() == NEOX.read_bytes()
    assert meta["throughput_tokens_per_s"] > 0 and meta["source"]["kind"] == "local"
    tok = load_tokenizer(NEOX)
    held = [is_heldout(d, 0.2) for d in docs]
    expected = {"train": [d for d, h in zip(docs, held) if not h], "heldout": [d for d, h in zip(docs, held) if h]}
    for split in ("train", "heldout"):
        tokens = open_tokens(out, split)
        assert tokens.dtype == np.dtype("<u2") and tokens.ndim == 1 and not tokens.flags.writeable
        assert len(tokens) == meta["splits"][split]["tokens"] == (out / f"{split}.bin").stat().st_size // 2
        assert tokens[-1] == EOS
        pieces = split_stream(tokens, EOS)  # EOS exactly once after every document, documents in stream order
        assert [tok.decode(p) for p in pieces] == [d.removesuffix("<|endoftext|>") for d in expected[split]]
        assert meta["splits"][split]["documents"] == len(expected[split]) and meta["splits"][split]["exhausted"]
    assert 40 < len(expected["heldout"]) < 120 and not set(expected["train"]) & set(expected["heldout"])
    assert int((np.asarray(open_tokens(out, "train")) == EOS).sum()) == len(expected["train"])


def test_caps_cut_the_streams(tmp_path, corpus) -> None:
    _, path = corpus
    full = build_shards(_cfg(path), tmp_path / "full", progress=False).out_dir
    capped = build_shards(_cfg(path, train_tokens=3000, heldout_tokens=700), tmp_path / "cap", progress=False)
    m = capped.meta
    assert m["splits"]["train"]["tokens"] == 3000 and m["splits"]["heldout"]["tokens"] == 700
    assert not m["splits"]["train"]["exhausted"]
    for split, n in (("train", 3000), ("heldout", 700)):
        np.testing.assert_array_equal(open_tokens(capped.out_dir, split), open_tokens(full, split)[:n])
    # documents counted include the cut last one
    eos_before_cut = int((np.asarray(open_tokens(full, "train")[:3000]) == EOS).sum())
    assert m["splits"]["train"]["documents"] in (eos_before_cut, eos_before_cut + 1)


def test_reproducible_across_runs_and_workers(tmp_path, corpus) -> None:
    _, path = corpus
    a = build_shards(_cfg(path), tmp_path / "a", progress=False, batch_docs=8).out_dir
    b = build_shards(_cfg(path), tmp_path / "b", progress=False, batch_docs=8).out_dir
    c = build_shards(_cfg(path, workers=2), tmp_path / "c", progress=False, batch_docs=8).out_dir
    d = build_shards(_cfg(path, workers=2), tmp_path / "d", progress=False, batch_docs=3).out_dir
    assert _bytes(a) == _bytes(b) == _bytes(c) == _bytes(d)


def test_idempotent_second_build_writes_nothing(tmp_path, corpus) -> None:
    _, path = corpus
    out = tmp_path / "s"
    build_shards(_cfg(path), out, progress=False)
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    again = build_shards(_cfg(path, workers=2), out, progress=False)  # workers do not change the request
    assert again.up_to_date and "up to date" in again.summary()
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == mtimes
    # a changed request rebuilds; the unchanged train split is kept
    changed = build_shards(_cfg(path, heldout_tokens=500), out, progress=False)
    assert not changed.up_to_date and changed.meta["splits"]["heldout"]["tokens"] == 500
    assert (out / "train.bin").stat().st_mtime_ns == mtimes["train.bin"]
    assert (out / "heldout.bin").stat().st_mtime_ns != mtimes["heldout.bin"]


def test_interrupted_build_resumes_to_the_same_bytes(tmp_path, corpus, monkeypatch) -> None:
    _, path = corpus
    cfg = _cfg(path, heldout_tokens=300)  # the held-out split fills early, train is cut off
    ref = build_shards(cfg, tmp_path / "ref", progress=False, batch_docs=4).out_dir
    real = shards.iter_documents

    def interrupted(*args, **kw):
        for i, text in enumerate(real(*args, **kw)):
            if i == 250:
                raise KeyboardInterrupt("simulated crash")
            yield text

    out = tmp_path / "s"
    monkeypatch.setattr(shards, "iter_documents", interrupted)
    with pytest.raises(KeyboardInterrupt):
        build_shards(cfg, out, progress=False, batch_docs=4)
    assert (out / "heldout.bin").is_file() and (out / ".heldout.done.json").is_file()
    assert not (out / "train.bin").exists() and not (out / "meta.json").exists()
    assert not list(out.glob("*.partial"))
    with pytest.raises(FileNotFoundError, match="sparsecod tokenize"):
        open_tokens(out, "train")
    heldout_mtime = (out / "heldout.bin").stat().st_mtime_ns

    monkeypatch.setattr(shards, "iter_documents", real)
    res = build_shards(cfg, out, progress=False, batch_docs=4)
    assert not res.up_to_date and res.new_tokens == res.meta["splits"]["train"]["tokens"]
    assert (out / "heldout.bin").stat().st_mtime_ns == heldout_mtime  # the finished split was not redone
    assert _bytes(out) == _bytes(ref)


def test_local_parquet_and_builtin_with_bpe(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("SPARSECOD_CACHE", str(tmp_path / "cache"))
    docs = synthetic_docs(200)
    pq.write_table(pa.table({"content": docs}), tmp_path / "c.parquet")
    cfg = DataConfig(corpus=str(tmp_path / "c.parquet"), text_field="content", tokenizer="bpe:300",
                     heldout_fraction=0.1, heldout_tokens=10_000)
    meta = build_shards(cfg, tmp_path / "p", progress=False).meta
    assert meta["eos_id"] == 0 and meta["vocab_size"] <= 300 and meta["dtype"] == "uint16"
    tok = load_tokenizer(tmp_path / "p" / "tokenizer.json")
    train = [d for d in docs if not is_heldout(d, 0.1)]
    assert [tok.decode(p) for p in split_stream(open_tokens(tmp_path / "p", "train"), 0)] == train

    builtin = DataConfig(corpus="builtin", tokenizer="bpe:512", max_chars=150_000, train_tokens=20_000,
                         heldout_tokens=2_000, heldout_fraction=0.1)
    res = build_shards(builtin, tmp_path / "b", progress=False)
    assert res.meta["splits"]["train"]["tokens"] == 20_000 and res.meta["splits"]["heldout"]["tokens"] == 2_000
    assert res.meta["source"]["kind"] == "builtin" and res.meta["vocab_size"] == 512


def test_empty_heldout_split_is_an_error(tmp_path) -> None:
    write_jsonl(tmp_path / "one.jsonl", ["a single document that is not held out"])
    with pytest.raises(ConfigError, match="heldout split"):
        build_shards(_cfg(tmp_path / "one.jsonl", heldout_fraction=1e-9), tmp_path / "s", progress=False)
    assert not (tmp_path / "s" / "meta.json").exists()


def test_token_dtype_and_contract_errors(tmp_path) -> None:
    assert token_dtype(50280) == np.dtype("<u2") and token_dtype(65535) == np.dtype("<u2")
    assert token_dtype(65536) == np.dtype("<u4")
    with pytest.raises(ValueError, match="split"):
        open_tokens(tmp_path, "validation")
    # a hand-written uint32 shard per the contract reads back; a truncated file is refused
    np.arange(10, dtype="<u4").tofile(tmp_path / "train.bin")
    np.arange(4, dtype="<u4").tofile(tmp_path / "heldout.bin")
    meta = {"dtype": "uint32", "eos_id": 9, "vocab_size": 70000, "tokenizer_sha256": "0" * 64,
            "splits": {"train": {"tokens": 10}, "heldout": {"tokens": 5}}, "source": {}}
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    np.testing.assert_array_equal(open_tokens(tmp_path, "train"), np.arange(10))
    with pytest.raises(ValueError, match="heldout.bin"):
        open_tokens(tmp_path, "heldout")


def test_fineweb_needs_a_train_cap(tmp_path) -> None:
    with pytest.raises(ConfigError, match="data.train_tokens"):
        build_shards(DataConfig(corpus="fineweb-edu", tokenizer=str(NEOX)), tmp_path / "s", progress=False)


def test_ctrl_c_while_tokenizing_leaves_no_partial_shard(tmp_path) -> None:
    """SIGINT to the whole process group (what Ctrl-C does) while `sparsecod tokenize` writes its splits: the
    process stops and leaves neither a `.partial` nor an incomplete `<split>.bin`, tokenizer temp file or meta.json."""
    import os
    import signal
    import subprocess
    import sys
    import time

    corpus = write_jsonl(tmp_path / "corpus.jsonl", synthetic_docs(200_000))  # 60k finished before the SIGINT once
    out = tmp_path / "s"
    cmd = [sys.executable, "-m", "sparsecod", "tokenize", "--corpus", str(corpus), "--tokenizer", str(NEOX),
           "--heldout-tokens", "100000000", "--workers", "2", "--out", str(out), "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    partial = out / ".train.bin.partial"
    deadline = time.time() + 120
    while proc.poll() is None and time.time() < deadline and not (partial.is_file() and partial.stat().st_size):
        time.sleep(0.02)
    assert proc.poll() is None, "finished before it could be interrupted: use a bigger corpus"
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0 and "KeyboardInterrupt" in err, err[-2000:]
    left = sorted(p.name for p in out.iterdir())
    assert left == ["tokenizer.json"], left  # the tokenizer copy is complete (written atomically) and kept
