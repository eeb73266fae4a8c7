"""The `builtin` corpus: English prose generated from the local Python standard library (offline default).

Used by the smoke and mini scales instead of FineWeb-Edu (protocol §1.1) when there is no network. Nothing is
stored in the repository: the text is read from the `.py` sources under sysconfig's `stdlib` path (excluding
site-/dist-packages), in sorted relative-path order, with `ast` and `tokenize` (no module is imported).
One document per module: its docstrings, comments (consecutive comment lines merged) and prose-like string
literals (>= 40 characters with a space), in source order, separated by blank lines. CPython 3.11 gives
~1,600 documents and ~7.3M characters (~2.2M tokens with bpe:4096). Deterministic for a given
Python installation.
"""

from __future__ import annotations

import ast
import hashlib
import io
import platform
import sysconfig
import tokenize
import warnings
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

from .pool import process_pool

MIN_LITERAL_CHARS = 40
_EXCLUDED_DIRS = {"site-packages", "dist-packages", "__pycache__"}
_DOC_NODES = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
# Per-process memo: stdlib root -> prose of its files parsed so far (a prefix of stdlib_files(root)).
_PARSED: dict[Path, list[str]] = {}


def stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


@lru_cache(maxsize=4)
def stdlib_files(root: Path | None = None) -> tuple[Path, ...]:
    """Every stdlib `.py` file, sorted by path relative to the stdlib root."""
    root = root or stdlib_root()
    found = (p for p in root.rglob("*.py") if not _EXCLUDED_DIRS.intersection(p.relative_to(root).parts))
    return tuple(sorted(found, key=lambda p: p.relative_to(root).as_posix()))


def describe_builtin() -> dict:
    """Identity of the builtin corpus on this machine (Python version, stdlib path, file list fingerprint)."""
    root = stdlib_root()
    files = stdlib_files(root)
    digest = hashlib.sha256()
    for p in files:
        digest.update(f"{p.relative_to(root).as_posix()}\0{p.stat().st_size}\n".encode())
    return {"kind": "builtin", "python": platform.python_version(), "stdlib": str(root), "files": len(files),
            "files_sha256": digest.hexdigest()}


def module_prose(path: str | Path) -> str:
    """Docstrings, comments and prose-like string literals of one source file, in source order ('' if none)."""
    source = Path(path).read_bytes()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = ast.parse(source)
    except (SyntaxError, ValueError, UnicodeDecodeError, RecursionError, MemoryError):
        return ""
    pieces: list[tuple[int, int, str]] = []
    docstring_nodes: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, _DOC_NODES):
            doc = ast.get_docstring(node, clean=True)
            if doc:
                first = node.body[0]
                docstring_nodes.add(id(first.value))
                pieces.append((first.lineno, first.col_offset, doc))
    for node in ast.walk(tree):
        if (isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstring_nodes
                and len(node.value) >= MIN_LITERAL_CHARS and " " in node.value):
            pieces.append((node.lineno, node.col_offset, node.value))
    pieces.extend(_comment_blocks(source))
    pieces.sort(key=lambda p: (p[0], p[1]))
    return "\n\n".join(text for _, _, text in pieces if _is_utf8(text))


def _is_utf8(text: str) -> bool:
    """False for strings with lone surrogates (some stdlib tests hold them), which no tokenizer accepts."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _comment_blocks(source: bytes) -> list[tuple[int, int, str]]:
    blocks: list[tuple[int, int, str]] = []
    last_line = -2
    try:
        for tok in tokenize.tokenize(io.BytesIO(source).readline):
            if tok.type != tokenize.COMMENT:
                continue
            text = tok.string.lstrip("#").strip()
            line, col = tok.start
            if not text or text.startswith("!") or "-*-" in text:
                continue
            if blocks and line == last_line + 1:
                blocks[-1] = (blocks[-1][0], blocks[-1][1], blocks[-1][2] + "\n" + text)
            else:
                blocks.append((line, col, text))
            last_line = line
    except (tokenize.TokenError, SyntaxError, UnicodeDecodeError):
        return []
    return blocks


def iter_builtin_documents(workers: int = 1) -> Iterator[str]:
    """Yield the builtin corpus documents in order; `workers` > 1 parses files in a process pool.

    Parsed files are memoized per process, so a second pass (e.g. BPE training, then tokenization) is free.
    """
    root = stdlib_root()
    files = stdlib_files(root)
    parsed = _PARSED.setdefault(root, [])
    pool = None
    chunk = max(1, workers) * 8
    try:
        i = 0
        while i < len(files):
            if i >= len(parsed):
                todo = files[len(parsed):len(parsed) + chunk]
                if workers > 1 and pool is None:
                    pool = process_pool(workers)
                parsed.extend(pool.map(module_prose, todo) if pool is not None else map(module_prose, todo))
            text = parsed[i]
            i += 1
            if text:
                yield text
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
