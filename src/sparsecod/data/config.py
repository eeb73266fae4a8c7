"""`DataConfig`: the `data:` section of a workflow config (protocol §1.1 corpus + tokenizer, §1.6 held-out set).

Keys (all optional; defaults are the paper's corpus and tokenizer, protocol §1.1):

* `id` — name of the shard directory under `results/data/` (read by the run registry).
* `corpus` — `fineweb-edu` (HF `HuggingFaceFW/fineweb-edu`, `sample-100BT`, streamed), `builtin` (offline prose
  generated from the local Python standard library), or a path / directory / glob of local
  `.txt` / `.jsonl` / `.json` / `.parquet` files.
* `text_field` — column holding the document text in jsonl/json/parquet files.
* `tokenizer` — a `tokenizer.json` path (or a directory holding one), a Hugging Face Hub id (online only),
  or `bpe:<vocab_size>` to train a byte-level BPE on the training documents.
* `train_tokens`, `heldout_tokens` — token caps of the two splits (`train_tokens: null` = the whole corpus).
* `heldout_fraction` — share of documents assigned to the held-out split by a content hash (protocol §1.6 CHOICE).
* `workers` — tokenizer processes (does not change the output).
* `max_chars` — stop reading the corpus after this many characters (the cap of the `builtin` corpus).
* `bpe_chars` — characters of training documents a `bpe:<V>` tokenizer is trained on.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from typing import Any

from ..model.config import ConfigError

PAPER_CORPUS = "fineweb-edu"
PAPER_TOKENIZER = "allenai/OLMo-1B-0724-hf"  # GPT-NeoX-20B BPE as shipped with OLMo (protocol §1.1)
BPE_PATTERN = re.compile(r"^bpe:(\d+)$")


@dataclass(frozen=True)
class DataConfig:
    """What to tokenize and how much (protocol §1.1, §1.6). Validated on construction; errors name `data.<key>`."""

    id: str = "default"
    corpus: str = PAPER_CORPUS
    text_field: str = "text"
    tokenizer: str = PAPER_TOKENIZER
    train_tokens: int | None = None
    heldout_tokens: int = 10_000_000  # PPL_SET size, protocol §1.6
    heldout_fraction: float = 0.05
    workers: int = 1
    max_chars: int | None = None
    bpe_chars: int = 20_000_000

    def __post_init__(self) -> None:
        for key in ("id", "corpus", "text_field", "tokenizer"):
            value = getattr(self, key)
            if not isinstance(value, str) or not value.strip():
                raise ConfigError(f"data.{key} must be a non-empty string, got {value!r}")
        for key, low in (("train_tokens", 1), ("heldout_tokens", 1), ("workers", 1), ("max_chars", 1),
                         ("bpe_chars", 1)):
            value = getattr(self, key)
            if value is None and key in ("train_tokens", "max_chars"):
                continue
            object.__setattr__(self, key, _as_int(key, value))
            if getattr(self, key) < low:
                raise ConfigError(f"data.{key} must be >= {low}, got {value!r}")
        fraction = self.heldout_fraction
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction < 1:
            raise ConfigError(f"data.heldout_fraction must be a number strictly between 0 and 1, got {fraction!r}")
        object.__setattr__(self, "heldout_fraction", float(fraction))
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
        """Build from a mapping (the `data:` section); unknown keys are rejected by name."""
        if d is None:
            return cls()
        if not isinstance(d, dict):
            raise ConfigError(f"config key 'data' must be a mapping, got {type(d).__name__}")
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise ConfigError(f"unknown data config key(s) {', '.join('data.' + k for k in unknown)}; "
                              f"known keys: {', '.join(known)}")
        return cls(**d)


def _as_int(key: str, value: Any) -> int:
    """Accept 1000, 1e9 (float or the string YAML reads `1e9` as) and '10_000'; reject 1.5, True, 'x'."""
    if isinstance(value, bool):
        raise ConfigError(f"data.{key} must be an integer, got {value!r}")
    if isinstance(value, int):
        return value
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"data.{key} must be an integer, got {value!r}") from None
    if not math.isfinite(number) or number != int(number):
        raise ConfigError(f"data.{key} must be an integer, got {value!r}")
    return int(number)
