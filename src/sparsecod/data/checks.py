"""Checks of the `data:` section before any job starts (`snakemake -n` parses the config; issue 15).

`plan_problems(section)` returns one line per problem, each naming the key and the fix: the section's keys
and values (`DataConfig`, e.g. bpe:<V> below its 257-token minimum), a local `data.corpus` (absolute, relative,
`~` or glob: it must name files, none of them empty, the text ones starting with UTF-8 text) and a
tokenizer file (`data.tokenizer` must parse as a tokenizers JSON file with an end-of-text token). Only the
head of each corpus file is read (HEAD_BYTES), so planning a cluster-sized corpus stays fast; the tokenize job
reports a bad byte further in, naming the file and the key (corpus.py). No network: Hub corpora and tokenizer ids
are checked by the job.
"""

from __future__ import annotations

import codecs
import os
import tempfile
from pathlib import Path
from typing import Any

from ..model.config import ConfigError
from .config import DataConfig
from .corpus import corpus_kind, local_files, utf8_problem
from .tokenizer import read_tokenizer_file, tokenizer_kind

HEAD_BYTES = 1 << 16
TEXT_SUFFIXES = (".txt", ".jsonl", ".json")


def plan_problems(section: dict[str, Any] | None) -> list[str]:
    """Every problem of the `data:` section that planning can see (empty list: none)."""
    try:
        cfg = DataConfig.from_dict(section)
    except ConfigError as err:
        return [str(err)]
    problems = []
    for check in (_corpus_problems, _tokenizer_problems):
        try:
            problems += check(cfg)
        except (ConfigError, FileNotFoundError) as err:
            problems.append(str(err))
    return problems


def _corpus_problems(cfg: DataConfig) -> list[str]:
    if corpus_kind(cfg.corpus) != "local":
        return []
    problems = []
    for path in local_files(cfg.corpus):
        size = path.stat().st_size
        if size == 0:
            problems.append(f"data.corpus={cfg.corpus!r}: {path} is empty; remove it or point data.corpus at files "
                            "with documents")
        elif path.suffix in TEXT_SUFFIXES:
            problem = _head_problem(path, cfg.corpus)
            if problem:
                problems.append(problem)
    return problems


def _head_problem(path: Path, corpus: str) -> str | None:
    """Whether the first HEAD_BYTES of a text file decode as UTF-8 (a character cut at the end is fine)."""
    with open(path, "rb") as f:
        head = f.read(HEAD_BYTES)
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=len(head) < HEAD_BYTES)
    except UnicodeDecodeError as err:
        return utf8_problem(path, corpus, err.start)
    return None


def _tokenizer_problems(cfg: DataConfig) -> list[str]:
    if tokenizer_kind(cfg.tokenizer) == "file":
        read_tokenizer_file(cfg.tokenizer)
    return []


def unwritable_reason(path: str | os.PathLike) -> str | None:
    """Why files cannot be created under `path` (None when they can): a read-only file system, no write permission
    (for this user: root passes permission bits, so a directory is created in `path`, or while it does not exist
    yet in its nearest existing parent, and removed again), or a file where a directory must be."""
    path = Path(path).expanduser().absolute()
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is a file, not a directory"
    if os.statvfs(existing).f_flag & os.ST_RDONLY:
        return f"{existing} is on a read-only file system"
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".sparsecod-write-check-", dir=existing))
    except OSError as err:
        return f"cannot create files in {existing} ({err.strerror or err})"
    return None
