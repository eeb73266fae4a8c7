"""`DataConfig`: the `data:` section of a workflow config (protocol §1.1 corpus + tokenizer, §1.6 held-out set).

Every key is optional (defaults: the paper's corpus and tokenizer, protocol §1.1); its type, bounds and description
are the fields below (sparsecod.config.keys).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from ..config.errors import ConfigError
from ..config.keys import Int, Real, from_mapping, key, section

PAPER_CORPUS = "fineweb-edu"
PAPER_TOKENIZER = "allenai/OLMo-1B-0724-hf"  # GPT-NeoX-20B BPE as shipped with OLMo (protocol §1.1)
BPE_PATTERN = re.compile(r"^bpe:(\d+)$")


# keys a workflow config must write (the shard directory and what fills it); `sparsecod tokenize` defaults them
WORKFLOW_REQUIRED = ["id", "corpus", "tokenizer", "train_tokens", "heldout_tokens"]


@section("data", json_schema_extra={"required": WORKFLOW_REQUIRED})
class DataConfig:
    """What to tokenize and how much (protocol §1.1, §1.6). Validated on construction; errors name `data.<key>`."""

    id: str = key("default", "name of the shard directory under <results>/data/", pattern=r"^[A-Za-z0-9_.-]+$")
    corpus: str = key(PAPER_CORPUS, "fineweb-edu (HF HuggingFaceFW/fineweb-edu sample-100BT, streamed), builtin "
                                    "(offline prose from the Python standard library), or a path / directory / glob "
                                    "of local .txt / .jsonl / .json / .parquet files", min_length=1)
    text_field: str = key("text", "column holding the document text in jsonl / json / parquet files", min_length=1)
    tokenizer: str = key(PAPER_TOKENIZER, "a tokenizer.json path (or a directory holding one), a Hugging Face Hub "
                                          "id (online only), or bpe:<vocab_size> to train a byte-level BPE on the "
                                          "training documents", min_length=1)
    train_tokens: Int | None = key(None, "token cap of the training split (null = the whole corpus)", ge=1)
    heldout_tokens: Int = key(10_000_000, "token cap of the held-out split (PPL_SET, protocol §1.6)", ge=1)
    heldout_fraction: Real = key(0.05, "share of documents assigned to the held-out split by a content hash "
                                       "(protocol §1.6 CHOICE)", gt=0, lt=1)
    workers: Int = key(1, "tokenizer processes (does not change the output)", ge=1)
    max_chars: Int | None = key(None, "stop reading the corpus after this many characters (null = no cap; the "
                                      "builtin corpus has its own)", ge=1)
    bpe_chars: Int = key(20_000_000, "characters of training documents a bpe:<V> tokenizer is trained on", ge=1)

    def __post_init__(self) -> None:
        for name in ("id", "corpus", "text_field", "tokenizer"):
            if not getattr(self, name).strip():
                raise ConfigError(f"data.{name} must be a non-empty string, got {getattr(self, name)!r}")
        if self.tokenizer.startswith("bpe"):
            match = BPE_PATTERN.match(self.tokenizer)
            if match is None or int(match.group(1)) < 257:
                raise ConfigError(f"data.tokenizer={self.tokenizer!r}: write bpe:<vocab_size> with vocab_size >= 257 "
                                  f"(256 byte tokens + <|endoftext|>), e.g. bpe:8192")

    def replace(self, **changes: Any) -> DataConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> DataConfig:
        """Build from a mapping (the `data:` section; None = every default); unknown keys are rejected by name."""
        return from_mapping(cls, d)

