"""Tokenizers (issue 3 item 1; protocol §1.1): the paper's GPT-NeoX/OLMo file, trained byte-level BPE, Hub errors."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from _data_testutil import NEOX, needs_neox, synthetic_docs

from sparsecod.fileio import file_sha256
from sparsecod.data.network import OfflineError
from sparsecod.data.tokenizer import (
    EOS_TOKEN,
    eos_id,
    load_tokenizer,
    resolve_tokenizer,
    tokenizer_kind,
    train_bpe,
    vocab_size,
)
from sparsecod.model.config import ConfigError

TEXT = "The curse of depth: deeper layers of Pre-LN models contribute less. Ünïcødé ✓ and\ttabs\n  spaces."


@needs_neox
def test_neox_file_round_trip_and_constants() -> None:
    path = resolve_tokenizer(str(NEOX))
    assert path == NEOX
    tok = load_tokenizer(path)
    assert vocab_size(tok) == 50280
    assert eos_id(tok) == 50279 and tok.id_to_token(50279) == EOS_TOKEN
    assert tok.encode("Hello world", add_special_tokens=False).ids == [12092, 1533]
    ids = tok.encode(TEXT, add_special_tokens=False).ids
    assert tok.decode(ids) == TEXT
    assert len(file_sha256(path)) == 64


def test_trained_bpe_round_trip(tmp_path) -> None:
    docs = synthetic_docs(300) + [TEXT]
    path = train_bpe(docs, 300, cache_dir=tmp_path)
    tok = load_tokenizer(path)
    assert vocab_size(tok) == 300
    assert eos_id(tok) == 0
    for text in (TEXT, docs[3], "unseen wörds 123 <>"):
        assert tok.decode(tok.encode(text, add_special_tokens=False).ids) == text
    # the special token is matched as one id inside text
    assert tok.encode("a" + EOS_TOKEN, add_special_tokens=False).ids[-1] == 0
    # merges were learnt: in-domain text takes clearly fewer tokens than bytes
    assert len(tok.encode(docs[3], add_special_tokens=False).ids) < 0.7 * len(docs[3].encode())


def test_bpe_deterministic_and_cached(tmp_path) -> None:
    docs = synthetic_docs(200)
    a = train_bpe(docs, 350, cache_dir=tmp_path / "a")
    b = train_bpe(docs, 350, cache_dir=tmp_path / "b")
    assert a.read_bytes() == b.read_bytes()
    mtime = a.stat().st_mtime_ns
    assert train_bpe(docs, 350, cache_dir=tmp_path / "a") == a and a.stat().st_mtime_ns == mtime  # cache hit
    c = train_bpe(docs[:-1], 350, cache_dir=tmp_path / "a")  # other corpus, other file
    assert c != a
    # a fresh interpreter (other hash seeds, other thread schedule) gives the same bytes
    code = ("import sys; sys.path.insert(0, sys.argv[2]); from _data_testutil import synthetic_docs; "
            "from sparsecod.data.tokenizer import train_bpe; "
            "print(train_bpe(synthetic_docs(200), 350, cache_dir=sys.argv[1]))")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "c"), os.path.dirname(__file__)],
                         capture_output=True, text=True, check=True, env={**os.environ, "PYTHONHASHSEED": "123"})
    assert open(out.stdout.strip(), "rb").read() == a.read_bytes()


def test_bpe_via_resolve(tmp_path) -> None:
    calls = []

    def texts():
        calls.append(1)
        return synthetic_docs(50)

    path = resolve_tokenizer("bpe:300", training_texts=texts, cache_dir=tmp_path)
    assert calls == [1] and path.parent == tmp_path / "tokenizers"
    assert vocab_size(load_tokenizer(path)) <= 300


def test_tokenizer_kinds(tmp_path) -> None:
    assert tokenizer_kind("bpe:8192") == "bpe"
    assert tokenizer_kind("allenai/OLMo-1B-0724-hf") == "hub"
    assert tokenizer_kind("some/dir/tokenizer.json") == "file"
    assert tokenizer_kind(str(tmp_path)) == "file"
    with pytest.raises(ConfigError, match="data.tokenizer"):
        tokenizer_kind("gpt2")
    with pytest.raises(FileNotFoundError, match="data.tokenizer"):
        resolve_tokenizer(str(tmp_path / "missing.json"))
    # a directory holding tokenizer.json resolves to that file, once it parses and has an end-of-text token
    (tmp_path / "tokenizer.json").write_bytes(b"{}")
    with pytest.raises(ConfigError, match=f"^data.tokenizer='{tmp_path}': {tmp_path}/tokenizer.json is not a "):
        resolve_tokenizer(str(tmp_path))
    from tokenizers import Tokenizer, models

    Tokenizer(models.WordLevel({"a": 0, "[UNK]": 1}, unk_token="[UNK]")).save(str(tmp_path / "tokenizer.json"))
    with pytest.raises(ConfigError, match=f"no <\\|endoftext\\|>.*data.tokenizer='{tmp_path}' must name"):
        resolve_tokenizer(str(tmp_path))
    Tokenizer(models.WordLevel({"a": 0, "<|endoftext|>": 1}, unk_token="a")).save(str(tmp_path / "tokenizer.json"))
    assert resolve_tokenizer(str(tmp_path)) == tmp_path / "tokenizer.json"


def test_missing_eos_is_named(tmp_path) -> None:
    from tokenizers import Tokenizer, models

    tok = Tokenizer(models.WordLevel({"a": 0, "[UNK]": 1}, unk_token="[UNK]"))
    with pytest.raises(ConfigError, match="data.tokenizer"):
        eos_id(tok)


def test_hub_tokenizer_offline_fails_at_once(monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(OfflineError) as err:
        resolve_tokenizer("allenai/OLMo-1B-0724-hf")
    assert time.perf_counter() - start < 5
    assert "data.tokenizer" in str(err.value) and "tokenizer.json" in str(err.value)
