"""`sparsecod tokenize` end to end (issue 3 item 4) on the builtin corpus with a small trained BPE."""

from __future__ import annotations

import json
import subprocess
import sys

import yaml

from sparsecod.cli import main
from sparsecod.data.shards import open_tokens, read_meta


def test_tokenize_cli_builtin_bpe(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("SPARSECOD_CACHE", str(tmp_path / "cache"))
    config = tmp_path / "smoke.yaml"
    config.write_text(yaml.safe_dump({"scale": "smoke", "data": {
        "id": "smoke", "corpus": "builtin", "tokenizer": "bpe:1024", "max_chars": 300_000,
        "train_tokens": 1_000_000, "heldout_tokens": 5_000, "heldout_fraction": 0.1}}))
    out = tmp_path / "shards"
    argv = ["tokenize", "--config", str(config), "--out", str(out), "--train-tokens", "30000", "--no-progress"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "tokens/s" in printed and "train 30,000 tokens" in printed and "heldout 5,000 tokens" in printed
    meta = read_meta(out)
    assert meta["config"]["train_tokens"] == 30_000 and meta["config"]["id"] == "smoke"  # flag overrides config
    assert meta["vocab_size"] == 1024 and meta["eos_id"] == 0 and meta["dtype"] == "uint16"
    assert len(open_tokens(out, "train")) == 30_000 and int(open_tokens(out, "train").max()) < 1024

    assert main(argv) == 0
    assert "up to date" in capsys.readouterr().out

    # the Snakemake rule's form: the data section as JSON, workers from the command line
    data = json.dumps(yaml.safe_load(config.read_text())["data"])
    assert main(["tokenize", "--data-json", data, "--out", str(tmp_path / "j"), "--train-tokens", "30000",
                 "--workers", "2", "--no-progress"]) == 0
    assert (tmp_path / "j" / "train.bin").read_bytes() == (out / "train.bin").read_bytes()
    assert (tmp_path / "j" / "heldout.bin").read_bytes() == (out / "heldout.bin").read_bytes()


def test_tokenize_cli_errors_are_clean(tmp_path, capsys, monkeypatch) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(yaml.safe_dump({"data": {"corpus": "builtin", "tokens": 5}}))
    assert main(["tokenize", "--config", str(config), "--out", str(tmp_path / "s")]) == 2
    assert "data.tokens" in capsys.readouterr().err
    assert main(["tokenize", "--data-json", "{corpus: x}", "--out", str(tmp_path / "s")]) == 2
    assert "--data-json" in capsys.readouterr().err
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    assert main(["tokenize", "--out", str(tmp_path / "s"), "--train-tokens", "100", "--tokenizer", "bpe:300",
                 "--no-progress"]) == 2
    assert "data.corpus" in capsys.readouterr().err


def test_tokenize_listed_in_help() -> None:
    out = subprocess.run([sys.executable, "-m", "sparsecod", "tokenize", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "--train-tokens" in out.stdout and "--corpus" in out.stdout
