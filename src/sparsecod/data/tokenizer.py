"""Tokenizers (protocol §1.1): the paper's GPT-NeoX/OLMo BPE from a file or the Hub, or a small trained byte-level BPE.

`data.tokenizer` is one of
* a path to a `tokenizers` JSON file (or a directory holding `tokenizer.json`), e.g. the OLMo GPT-NeoX file
  `allenai_gpt-neox-olmo-dolma-v1_5.json` (vocab 50,280, EOS `<|endoftext|>` = 50279, protocol §1.1);
* a Hugging Face Hub model id holding a tokenizer.json (online only), e.g. `allenai/OLMo-1B-0724-hf`;
* `bpe:<V>`: a byte-level BPE with V tokens (incl. EOS `<|endoftext|>` = id 0) trained on the training
  documents, for the small scales. Training is deterministic (same texts and V give a byte-identical
  file) and cached under `<cache>/tokenizers/` by a hash of the texts and the recipe.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path

import tokenizers
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

from ..config.errors import ConfigError
from ..fileio import file_sha256, write_bytes_atomic
from .config import BPE_PATTERN
from .network import OfflineError, offline_reason

log = logging.getLogger(__name__)

EOS_TOKEN = "<|endoftext|>"
BPE_RECIPE = "bytelevel-bpe/NFC/min_frequency=2/v1"  # bump when train_bpe changes its output
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")

__all__ = ["EOS_TOKEN", "default_cache_dir", "eos_id", "file_sha256", "load_tokenizer", "read_tokenizer_file",
           "resolve_tokenizer", "tokenizer_kind", "train_bpe", "vocab_size"]


def default_cache_dir() -> Path:
    """$SPARSECOD_CACHE, else $XDG_CACHE_HOME/sparsecod, else ~/.cache/sparsecod."""
    if os.environ.get("SPARSECOD_CACHE"):
        return Path(os.environ["SPARSECOD_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "sparsecod"


def tokenizer_kind(spec: str) -> str:
    """'bpe', 'file' or 'hub' for a `data.tokenizer` value (raises ConfigError when it is none of them)."""
    if spec.startswith("bpe:") and BPE_PATTERN.match(spec):
        return "bpe"
    if Path(spec).expanduser().exists() or spec.endswith(".json") or spec.startswith(("/", ".", "~")):
        return "file"
    if _HUB_ID.match(spec):
        return "hub"
    if "/" in spec:
        return "file"
    raise ConfigError(f"data.tokenizer={spec!r} is not a tokenizer.json path, a Hub id (owner/name) "
                      f"or bpe:<vocab_size>")


def local_tokenizer_file(spec: str) -> Path:
    """The tokenizer.json a file-kind `data.tokenizer` points to (a file, or a directory holding tokenizer.json)."""
    path = Path(spec).expanduser()
    if path.is_dir():
        path = path / "tokenizer.json"
    if not path.is_file():
        raise FileNotFoundError(f"data.tokenizer={spec!r}: {path} does not exist; pass the path of a tokenizers "
                                f"JSON file (tokenizer.json), a Hub id when online, or bpe:<vocab_size>")
    return path


def read_tokenizer_file(spec: str) -> Tokenizer:
    """The tokenizer a file-kind `data.tokenizer` names, after checking that it parses and has an end-of-text
    token; a missing, corrupt or EOS-less file fails naming data.tokenizer."""
    path = local_tokenizer_file(spec)
    try:
        tok = Tokenizer.from_file(str(path))
    except Exception as err:  # noqa: BLE001 - tokenizers raises a bare Exception for any unreadable file
        reason = str(err).splitlines()[0] if str(err) else "unreadable"
        raise ConfigError(f"data.tokenizer={spec!r}: {path} is not a tokenizers JSON file ({reason}); give a "
                          "tokenizer.json saved by `tokenizers`/`transformers`, a Hub id, or bpe:<vocab_size>"
                          ) from None
    eos_id(tok, spec)
    return tok


def resolve_tokenizer(
    spec: str,
    *,
    training_texts: Callable[[], Iterable[str]] | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> Path:
    """Path of the tokenizer.json that `data.tokenizer=spec` names, training or downloading it if needed.

    training_texts: called (only for bpe:<V>) to get the documents to train on.
    """
    kind = tokenizer_kind(spec)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    if kind == "file":
        read_tokenizer_file(spec)
        return local_tokenizer_file(spec)
    if kind == "bpe":
        if training_texts is None:
            raise ValueError(f"data.tokenizer={spec!r} needs training texts")
        return train_bpe(training_texts(), int(BPE_PATTERN.match(spec).group(1)), cache_dir=cache)
    reason = offline_reason()
    if reason is not None:
        raise OfflineError(f"data.tokenizer={spec!r} is a Hugging Face Hub id but the Hub is unreachable ({reason}); "
                           f"set data.tokenizer to a local tokenizer.json path (e.g. the OLMo GPT-NeoX "
                           f"allenai_gpt-neox-olmo-dolma-v1_5.json) or bpe:<vocab_size>")
    path = cache / "tokenizers" / "hub" / (spec.replace("/", "__") + ".json")
    tok = Tokenizer.from_pretrained(spec)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, tok.to_str(pretty=True).encode())
    return path


def train_bpe(texts: Iterable[str], vocab_size: int, cache_dir: str | os.PathLike | None = None) -> Path:
    """Train (or fetch from the cache) a byte-level BPE of `vocab_size` tokens; returns its tokenizer.json path.

    Recipe: NFC normalizer, ByteLevel pre-tokenizer/decoder (no prefix space, GPT-2 regex), all 256 bytes in
    the initial alphabet, min_frequency 2, special token `<|endoftext|>` (id 0). A small corpus may yield
    fewer than `vocab_size` tokens; the file's own vocabulary is authoritative.
    """
    texts = [t for t in texts if t]
    digest = hashlib.sha256(f"{BPE_RECIPE}|tokenizers={tokenizers.__version__}|V={vocab_size}".encode())
    for text in texts:
        data = text.encode("utf-8", "surrogatepass")
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = cache / "tokenizers" / f"bpe{vocab_size}-{digest.hexdigest()[:20]}.json"
    if path.is_file():
        return path
    if not texts:
        raise ConfigError("data.tokenizer=bpe:<V> has no training text: the corpus (data.corpus) yielded no documents")
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=2, special_tokens=[EOS_TOKEN], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(texts, trainer=trainer, length=len(texts))
    if tok.get_vocab_size() < vocab_size:
        log.warning("bpe:%d trained only %d tokens (corpus too small for the requested vocabulary)",
                    vocab_size, tok.get_vocab_size())
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, tok.to_str(pretty=True).encode())
    return path


def load_tokenizer(path: str | os.PathLike) -> Tokenizer:
    return Tokenizer.from_file(str(path))


EOS_FALLBACKS = ("<|end_of_text|>", "</s>")  # end of text of Llama-3 and Llama-1/2 tokenizers (external models)


def eos_id(tok: Tokenizer, spec: str | None = None) -> int:
    """Id of `<|endoftext|>` (50279 for the paper's tokenizer, protocol §1.1), else of a Llama tokenizer's EOS_FALLBACKS."""
    for token in (EOS_TOKEN, *EOS_FALLBACKS):
        idx = tok.token_to_id(token)
        if idx is not None:
            return idx
    key = f"data.tokenizer={spec!r}" if spec is not None else "data.tokenizer"
    raise ConfigError(f"the tokenizer has no {EOS_TOKEN} (nor {' / '.join(EOS_FALLBACKS)}) token; {key} "
                      "must name a tokenizer with one")


def vocab_size(tok: Tokenizer) -> int:
    """Largest token id + 1, added tokens included (50,280 for the paper's tokenizer; the model pads, §1.1)."""
    return max(tok.get_vocab(with_added_tokens=True).values()) + 1
