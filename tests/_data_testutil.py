"""Helpers shared by tests/test_data_*.py: synthetic corpora and a stream-to-documents splitter."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

# Real data lives outside the checkout; tests find it through these variables (.ci/run sets both) or skip.
TOKENIZER_ENV = "SPARSECOD_TEST_TOKENIZER"  # the GPT-NeoX tokenizer.json (allenai_gpt-neox-olmo-dolma-v1_5.json)
NEOX = Path(os.environ.get(TOKENIZER_ENV, "")).expanduser()
WORDS = ("the model layer depth sparsity attention weight decay expert token curse variance residual norm "
         "learning rate batch window held out corpus tokenizer shard").split()

needs_neox = pytest.mark.skipif(not (os.environ.get(TOKENIZER_ENV) and NEOX.is_file()),
                                reason=f"set ${TOKENIZER_ENV} to the GPT-NeoX tokenizer.json "
                                       "(allenai_gpt-neox-olmo-dolma-v1_5.json)")


def synthetic_docs(n: int, seed: int = 0) -> list[str]:
    """n distinct documents of 20-80 words (document i starts with 'Document i.')."""
    rng = np.random.default_rng(seed)
    return [f"Document {i}. " + " ".join(rng.choice(WORDS, size=int(rng.integers(20, 80)))) + "."
            for i in range(n)]


def write_jsonl(path: Path, docs: list[str], field: str = "text") -> Path:
    path.write_text("".join(json.dumps({field: d, "id": i}) + "\n" for i, d in enumerate(docs)))
    return path


def split_stream(tokens: np.ndarray, eos: int) -> list[list[int]]:
    """Documents of a flat token stream (each ends with EOS; a trailing cut document is dropped)."""
    ends = np.flatnonzero(np.asarray(tokens) == eos)
    starts = np.concatenate([[0], ends[:-1] + 1])
    return [tokens[s:e].tolist() for s, e in zip(starts, ends)]
