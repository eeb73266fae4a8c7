"""Planning-time checks of the `data:` and `results:` keys (issue 15 item 5: what a new user gets wrong).

Each problem is one line naming the key and the fix (sparsecod.data.checks); tests/test_workflow.py checks that
`snakemake -n` stops with them before any job."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from sparsecod.cli import main
from sparsecod.data.checks import HEAD_BYTES, plan_problems, unwritable_reason


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "docs.jsonl"
    path.write_text("".join(json.dumps({"text": f"document {i} about depth and sparsity"}) + "\n" for i in range(50)))
    return path


def test_an_absolute_corpus_path_plans(corpus) -> None:
    assert corpus.is_absolute()
    assert plan_problems({"corpus": str(corpus), "tokenizer": "bpe:300"}) == []
    assert plan_problems({"corpus": str(corpus.parent / "*.jsonl"), "tokenizer": "bpe:300"}) == []  # absolute glob
    assert plan_problems({"corpus": "builtin", "tokenizer": "bpe:257"}) == []  # the minimum


@pytest.mark.parametrize(
    "section, message",
    [
        ({"corpus": "/no/such/dir/docs.jsonl"}, "data.corpus='/no/such/dir/docs.jsonl' matches no file; give "),
        ({"corpus": "/no/such/*.parquet"}, "data.corpus='/no/such/*.parquet' matches no file"),
        ({"corpus": "builtin", "tokenizer": "bpe:10"}, "data.tokenizer='bpe:10': write bpe:<vocab_size> with "
                                                       "vocab_size >= 257 (256 byte tokens + <|endoftext|>)"),
        ({"corpus": "builtin", "tokenizer": "/no/such/tokenizer.json"}, "data.tokenizer='/no/such/tokenizer.json': "),
    ],
)
def test_bad_paths_and_values_are_one_line_naming_the_key(section, message) -> None:
    (problem,) = plan_problems(section)
    assert problem.startswith(message) and "\n" not in problem


def test_empty_non_utf8_and_corrupt_files_are_refused(tmp_path, corpus) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    latin = tmp_path / "latin1.txt"
    latin.write_bytes("Ångström café\n".encode("latin-1"))
    assert plan_problems({"corpus": str(empty)}) == [
        f"data.corpus='{empty}': {empty} is empty; remove it or point data.corpus at files with documents"]
    (problem,) = plan_problems({"corpus": str(latin)})
    assert problem.startswith(f"data.corpus='{latin}': {latin} is not UTF-8 text (invalid byte at offset 0); convert")
    # a glob with one bad file among good ones names the bad one
    assert [p.split(": ", 1)[1].split(";")[0] for p in plan_problems({"corpus": str(tmp_path / "*")})] == [
        f"{empty} is empty", f"{latin} is not UTF-8 text (invalid byte at offset 0)"]
    # a multi-byte character cut by the head read is not an error
    cut = tmp_path / "cut.txt"
    cut.write_bytes(b"a" * (HEAD_BYTES - 1) + "é".encode() + b" more")
    assert plan_problems({"corpus": str(cut)}) == []
    broken = tmp_path / "tokenizer.json"
    broken.write_text('{"version": "1.0", "model": ')
    (problem,) = plan_problems({"corpus": str(corpus), "tokenizer": str(broken)})
    assert problem.startswith(f"data.tokenizer='{broken}': {broken} is not a tokenizers JSON file (")
    assert problem.endswith("give a tokenizer.json saved by `tokenizers`/`transformers`, a Hub id, or bpe:<vocab_size>")


def test_the_tokenize_cli_refuses_a_corrupt_tokenizer_in_one_line(tmp_path, corpus, capsys) -> None:
    broken = tmp_path / "tokenizer.json"
    broken.write_text("not json")
    assert main(["tokenize", "--corpus", str(corpus), "--tokenizer", str(broken), "--out", str(tmp_path / "s"),
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"sparsecod tokenize: error: data.tokenizer='{broken}': ") and err.count("\n") == 1
    assert not (tmp_path / "s" / "meta.json").exists()


def test_unwritable_results(tmp_path) -> None:
    assert unwritable_reason(tmp_path / "new" / "results") is None  # created later, under a writable parent
    assert not (tmp_path / "new").exists() and list(tmp_path.iterdir()) == []  # the probe leaves nothing
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert unwritable_reason(blocker / "results") == f"{blocker} is a file, not a directory"
    if os.geteuid() == 0:  # root ignores permission bits; /proc takes no new entries
        assert unwritable_reason("/proc/sparsecod-results").startswith("cannot create files in /proc (")
    else:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o555)
        assert unwritable_reason(locked / "results").startswith(f"cannot create files in {locked} (")


def test_unknown_run_id_on_the_cli_is_one_line(tmp_path, capsys) -> None:
    import yaml

    from sparsecod.experiments import load_config

    cfg = tmp_path / "wf.yaml"
    smoke = Path(__file__).resolve().parents[1] / "config" / "smoke.yaml"
    cfg.write_text(yaml.safe_dump({**load_config(smoke), "results": str(tmp_path / "r")}))
    assert main(["run-config", "gqa-G7", "--out", str(tmp_path / "run.yaml"), "--workflow-config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sparsecod run-config: error: unknown run 'gqa-G7': the workflow config defines no such run "
                          "(did you mean gqa-G4, gqa-G1, gqa-G16? its runs: depth-L12, ") and err.count("\n") == 1
