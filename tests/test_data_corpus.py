"""Corpora (issue 3 item 2; protocol §1.1, §1.6): builtin, local files via `datasets`, held-out rule, offline errors."""

from __future__ import annotations

import re
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from _data_testutil import synthetic_docs, write_jsonl

from sparsecod.data.builtin import describe_builtin, module_prose, stdlib_files
from sparsecod.data.config import DataConfig
from sparsecod.data.corpus import describe_source, is_heldout, iter_documents, iter_split, local_files
from sparsecod.data.network import OfflineError
from sparsecod.model.config import ConfigError


def test_module_prose_known_answer(tmp_path) -> None:
    src = tmp_path / "m.py"
    src.write_text(
        '#!/usr/bin/env python\n'
        '# -*- coding: utf-8 -*-\n'
        '"""Module doc."""\n'
        'import os  # first comment\n'
        '# second comment\n'
        'X = "short"\n'
        'Y = "a long prose-like literal that is certainly over forty characters"\n'
        'Z = "no_spaces_in_this_literal_so_it_is_skipped_even_if_long"\n'
        'def f():\n'
        '    """Function doc.\n\n    More.\n    """\n'
        '    return "#not a comment"\n'
    )
    assert module_prose(src) == (
        "Module doc.\n\nfirst comment\nsecond comment\n\n"
        "a long prose-like literal that is certainly over forty characters\n\nFunction doc.\n\nMore."
    )
    bad = tmp_path / "bad.py"
    bad.write_text("def (:\n")
    assert module_prose(bad) == ""


def test_builtin_corpus_deterministic_and_nontrivial() -> None:
    cfg = DataConfig(corpus="builtin", max_chars=200_000)
    docs = list(iter_documents(cfg))
    assert docs == list(iter_documents(cfg))
    total = sum(map(len, docs))
    assert 200_000 <= total < 200_000 + max(map(len, docs))  # stops at the cap
    assert len(docs) >= 10 and len(set(docs)) == len(docs)
    words = " ".join(docs).split()
    assert len(set(words)) > 5_000  # real prose, not boilerplate
    assert {"the", "of", "return", "and"} <= set(words)
    assert len(stdlib_files()) > 500 and describe_builtin()["files"] == len(stdlib_files())
    # the cap is a prefix of the uncapped stream
    more = list(iter_documents(DataConfig(corpus="builtin", max_chars=400_000)))
    assert more[:len(docs)] == docs and len(more) > len(docs)


def test_local_jsonl_parquet_txt(tmp_path) -> None:
    docs = synthetic_docs(30)
    write_jsonl(tmp_path / "a.jsonl", docs[:10])
    pq.write_table(pa.table({"content": docs[10:20], "n": list(range(10))}), tmp_path / "b.parquet")
    (tmp_path / "c.txt").write_text("\n\n".join(docs[20:]) + "\n")

    assert list(iter_documents(DataConfig(corpus=str(tmp_path / "a.jsonl")))) == docs[:10]
    parquet = DataConfig(corpus=str(tmp_path / "b.parquet"), text_field="content")
    assert list(iter_documents(parquet)) == docs[10:20]
    assert list(iter_documents(DataConfig(corpus=str(tmp_path / "c.txt")))) == docs[20:]
    # a glob in sorted path order; a directory the same
    assert [p.name for p in local_files(str(tmp_path / "*"))] == ["a.jsonl", "b.parquet", "c.txt"]
    assert [p.name for p in local_files(str(tmp_path))] == ["a.jsonl", "b.parquet", "c.txt"]
    assert list(iter_documents(DataConfig(corpus=str(tmp_path / "*.jsonl")))) == docs[:10]
    src = describe_source(parquet)
    assert src["kind"] == "local" and src["files"][0]["bytes"] == (tmp_path / "b.parquet").stat().st_size


def test_local_errors_name_the_key(tmp_path) -> None:
    pq.write_table(pa.table({"content": ["x y"]}), tmp_path / "b.parquet")
    with pytest.raises(ConfigError, match="data.text_field"):
        list(iter_documents(DataConfig(corpus=str(tmp_path / "b.parquet"))))
    with pytest.raises(ConfigError, match="data.corpus"):
        list(iter_documents(DataConfig(corpus=str(tmp_path / "nothing*.jsonl"))))
    (tmp_path / "d.csv").write_text("text\nx\n")
    with pytest.raises(ConfigError, match="unsupported suffix"):
        local_files(str(tmp_path / "d.csv"))


def test_heldout_rule_is_a_deterministic_document_split(tmp_path) -> None:
    docs = synthetic_docs(2000)
    held = [d for d in docs if is_heldout(d, 0.1)]
    assert 150 < len(held) < 250  # ~10 % (binomial sd ~13)
    assert held == [d for d in docs if is_heldout(d, 0.1)]
    assert all(is_heldout(d, 0.2) for d in held)  # monotone in the fraction
    write_jsonl(tmp_path / "a.jsonl", docs)
    cfg = DataConfig(corpus=str(tmp_path / "a.jsonl"), heldout_fraction=0.1)
    train, heldout = list(iter_split(cfg, "train")), list(iter_split(cfg, "heldout"))
    assert heldout == held and not set(train) & set(heldout) and len(train) + len(heldout) == len(docs)


@pytest.mark.parametrize("var", ["HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"])
def test_fineweb_offline_fails_at_once(monkeypatch, var) -> None:
    monkeypatch.setenv(var, "1")
    start = time.perf_counter()
    with pytest.raises(OfflineError) as err:
        next(iter_documents(DataConfig(corpus="fineweb-edu", train_tokens=1000)))
    assert time.perf_counter() - start < 5
    assert "data.corpus" in str(err.value) and var in str(err.value)


def test_fineweb_unreachable_endpoint_fails_at_once(monkeypatch) -> None:
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HTTPS_PROXY", "https_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens on the discard port
    start = time.perf_counter()
    with pytest.raises(OfflineError, match="data.corpus"):
        next(iter_documents(DataConfig(corpus="fineweb-edu", train_tokens=1000)))
    assert time.perf_counter() - start < 5


def test_data_config_validation() -> None:
    cfg = DataConfig.from_dict({"corpus": "builtin", "tokenizer": "bpe:512", "train_tokens": "2e6", "max_chars": 1e6})
    assert cfg.train_tokens == 2_000_000 and cfg.max_chars == 1_000_000
    assert DataConfig.from_dict(None) == DataConfig()
    with pytest.raises(ConfigError, match="data.tokens_train"):
        DataConfig.from_dict({"tokens_train": 5})
    with pytest.raises(ConfigError, match="data.heldout_fraction"):
        DataConfig(heldout_fraction=1.0)
    with pytest.raises(ConfigError, match="data.train_tokens"):
        DataConfig(train_tokens=1.5)
    with pytest.raises(ConfigError, match="bpe:<vocab_size>"):
        DataConfig(tokenizer="bpe:x")


def test_bad_local_files_name_the_key_when_tokenizing(tmp_path) -> None:
    """Non-UTF-8 text and empty files fail while reading the corpus naming data.corpus and the file."""
    from sparsecod.data.corpus import iter_documents

    (tmp_path / "latin1.txt").write_bytes("first\n\ncaf\xe9 latin-1\n".encode("latin-1"))
    (tmp_path / "latin1.jsonl").write_bytes(b'{"text": "ok"}\n{"text": "caf\xe9"}\n')
    (tmp_path / "empty.jsonl").write_bytes(b"")
    for name, message in (("latin1.txt", "is not UTF-8 text"), ("latin1.jsonl", "is not UTF-8 text"),
                          ("empty.jsonl", "is empty")):
        path = tmp_path / name
        with pytest.raises(ConfigError, match="^" + re.escape(f"data.corpus='{path}': {path} {message}; ")):
            list(iter_documents(DataConfig(corpus=str(path))))
