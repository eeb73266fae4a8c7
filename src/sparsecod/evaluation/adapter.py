"""lm-eval model adapter `sparsecod`: scores a saved sparsecod model with the stock harness (protocol M12).

Registered as ``@register_model("sparsecod")``, so ``lm_eval.simple_evaluate(model="sparsecod",
model_args="checkpoint=<model dir>")`` works once this module is imported (``python -m
sparsecod.evaluation.lm_eval_cli --model sparsecod ...`` does that for the stock CLI).

model_args: ``checkpoint`` (a `sparsecod.model.save_model` directory holding tokenizer.json),
``batch_size`` (default 32), ``device`` (auto | cpu | cuda[:i]), ``dtype`` (float32 | bfloat16 | float16 |
auto = bfloat16 on a bf16-capable GPU, else float32), ``max_length`` (context window; default: the run's
training T from ``<checkpoint>/../run.yaml``, else 2048), ``progress`` (progress bar, default true).

Log-likelihood requests are scored like lm-eval's HF wrapper: ``inp = (ctx + cont)[-(max_length+1):][:-1]``
(contexts truncated from the left), right padding, batches sorted by length (longest first) with
requests that share ``ctx + cont[:-1]`` scored once; only the continuation positions go through the
final norm, LM head and an fp32 log-softmax over the padded vocabulary (the distribution the model was
trained with). Returns ``(sum of log-probabilities, continuation is the greedy decode)`` in the
original order. Right padding is exact: attention is causal and MoE routing is per token (dropless).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from lm_eval import utils as lm_utils
from lm_eval.api.model import TemplateLM
from lm_eval.api.registry import register_model
from lm_eval.models.utils import Collator
from tokenizers import Tokenizer
from tqdm import tqdm

from ..model.io import load_model
from .checkpoint import training_seq_len

log = logging.getLogger(__name__)

EOS_TOKEN = "<|endoftext|>"
DEFAULT_MAX_LENGTH = 2048
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}

Request = tuple[tuple[str, str] | None, list[int], list[int]]


def resolve_device(device: str | None) -> torch.device:
    """auto/None -> cuda if available else cpu; a CUDA device without CUDA (the stock CLI's default
    `cuda:0`) falls back to cpu with a warning."""
    if device in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        log.warning("device=%s requested but CUDA is not available: using cpu", device)
        return torch.device("cpu")
    return dev


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype in (None, "", "auto"):
        bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
        return torch.bfloat16 if bf16 else torch.float32
    if dtype not in DTYPES:
        raise ValueError(f"model_args dtype={dtype!r} is not supported; use one of {sorted(DTYPES)} or auto")
    return DTYPES[dtype]


@register_model("sparsecod")
class SparsecodLM(TemplateLM):
    """A trained sparsecod Transformer behind lm-eval's log-likelihood interface (multiple-choice tasks)."""

    def __init__(
        self,
        checkpoint: str | os.PathLike,
        batch_size: int | str | None = 32,
        device: str | None = "auto",
        dtype: str | torch.dtype | None = "float32",
        max_length: int | str | None = None,
        progress: bool | str = True,
        **unused: Any,
    ) -> None:
        super().__init__()
        unused.pop("max_batch_size", None)  # passed by simple_evaluate for every model
        if unused:
            raise ValueError(f"unknown sparsecod model_args {sorted(unused)}; known: checkpoint, batch_size, "
                             "device, dtype, max_length, progress")
        checkpoint = Path(checkpoint)
        tok_file = checkpoint / "tokenizer.json"
        if not tok_file.is_file():
            raise FileNotFoundError(f"model_args checkpoint={checkpoint}: {tok_file} is missing (a model directory "
                                    "written by `sparsecod train`, i.e. <run_dir>/model, holds it)")
        if batch_size in (None, ""):
            batch_size = 32
        if isinstance(batch_size, str) and not batch_size.isdigit():
            raise ValueError(f"model_args batch_size={batch_size!r}: pass a positive integer (no 'auto')")
        self.batch_size = int(batch_size)
        if self.batch_size < 1:
            raise ValueError(f"model_args batch_size must be >= 1, got {self.batch_size}")
        self._device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self._device)
        self.checkpoint = checkpoint
        self.progress = progress not in (False, "false", "False", "0", 0)
        self.model = load_model(checkpoint, device=self._device).to(self.dtype)
        self.hf_tokenizer = Tokenizer.from_file(str(tok_file))
        eot = self.hf_tokenizer.token_to_id(EOS_TOKEN)
        if eot is None:
            raise ValueError(f"{tok_file} has no {EOS_TOKEN!r} token (the EOS of every sparsecod tokenizer)")
        self._eot = int(eot)
        if self.hf_tokenizer.get_vocab_size() > self.model.cfg.padded_vocab:
            raise ValueError(f"{tok_file} has {self.hf_tokenizer.get_vocab_size()} tokens but the model only "
                             f"{self.model.cfg.padded_vocab} embedding rows: wrong tokenizer for {checkpoint}")
        if max_length in (None, ""):
            max_length = training_seq_len(checkpoint) or DEFAULT_MAX_LENGTH
        self._max_length = int(max_length)
        if self._max_length < 1:
            raise ValueError(f"model_args max_length must be >= 1, got {self._max_length}")

    # --- what TemplateLM needs -------------------------------------------------------------
    @property
    def eot_token_id(self) -> int:
        return self._eot

    @property
    def max_length(self) -> int:
        return self._max_length

    @property
    def tokenizer_name(self) -> str:
        return str(self.checkpoint / "tokenizer.json")

    def get_model_info(self) -> dict[str, Any]:
        """Added by simple_evaluate to results['config']."""
        counts = self.model.cfg.param_counts()
        return {"model_checkpoint": str(self.checkpoint), "model_dtype": str(self.dtype).removeprefix("torch."),
                "max_length": self._max_length, "eot_token_id": self._eot,
                "model_num_parameters": counts["total"], "model_non_embedding_parameters": counts["non_embedding"]}

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, **kwargs: Any) -> list[int]:
        """Plain BPE ids (no BOS exists; the empty-context prefix is EOS, added by TemplateLM)."""
        return self.hf_tokenizer.encode(string, add_special_tokens=False).ids

    def tok_decode(self, tokens: list[int]) -> str:
        return self.hf_tokenizer.decode(tokens)

    def generate_until(self, requests: list, disable_tqdm: bool = False) -> list[str]:
        raise NotImplementedError(
            "the sparsecod adapter scores log-likelihoods only (multiple-choice and perplexity tasks such as mmlu, "
            "arc_easy, arc_challenge, hellaswag); generative tasks (generate_until) are not supported"
        )

    # --- scoring ----------------------------------------------------------------------------
    @torch.inference_mode()
    def _forward_continuations(self, inputs: list[list[int]], spans: list[int]) -> list[torch.Tensor]:
        """Right-padded forward; returns per row the fp32 log-probs (span_i, V) of its last span_i positions."""
        lengths = [len(x) for x in inputs]
        T = max(lengths)
        idx = torch.full((len(inputs), T), self._eot, dtype=torch.long)
        for i, row in enumerate(inputs):
            idx[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        idx = idx.to(self._device)
        model = self.model
        x = model.run_blocks(model.embed(idx), model.blocks, model.context(T, idx.device))  # (B, T, d)
        rows = torch.cat([torch.full((s,), i) for i, s in enumerate(spans)])
        cols = torch.cat([torch.arange(n - s, n) for n, s in zip(lengths, spans, strict=True)])
        hidden = x[rows.to(x.device), cols.to(x.device)]  # (Σ span, d)
        logprobs = F.log_softmax(model.head(hidden).float(), dim=-1)  # (Σ span, V)
        return list(logprobs.split(spans))

    def _loglikelihood_tokens(
        self, requests: list[Request], disable_tqdm: bool = False, **kwargs: Any
    ) -> list[tuple[float, bool]]:
        """requests: ((context, continuation) or None, context ids, continuation ids) -> (logprob, is_greedy)."""
        for _, ctx, cont in requests:
            if not ctx or not cont:
                raise ValueError("every log-likelihood request needs a non-empty context and continuation")
            if len(cont) > self._max_length:
                raise ValueError(f"a continuation of {len(cont)} tokens does not fit max_length={self._max_length}")

        def sort_key(req: Request) -> tuple[int, tuple[int, ...]]:
            toks = req[1] + req[2]
            return -len(toks), tuple(toks)

        collator = Collator(requests, sort_fn=sort_key, group_by="contexts", group_fn=lambda r: r[1] + r[2][:-1])
        results: list[tuple[float, bool]] = []
        n_truncated = 0
        pbar = tqdm(total=len(requests), disable=disable_tqdm or not self.progress, desc="sparsecod loglikelihood")
        for chunk in collator.get_batched(n=self.batch_size):
            inputs, spans = [], []
            for _, ctx, cont in chunk:
                whole = ctx + cont
                n_truncated += len(whole) > self._max_length + 1
                inputs.append(whole[-(self._max_length + 1):][:-1])
                spans.append(len(cont))
            logprobs = self._forward_continuations(inputs, spans)
            for (req_str, ctx, cont), lp in zip(chunk, logprobs, strict=True):
                greedy = lp.argmax(dim=-1)
                for r_str, c_toks, r_lp in collator.get_cache(req_str=req_str, cxt_toks=ctx, cont_toks=cont,
                                                               logits=lp.unsqueeze(0)):
                    target = torch.tensor(c_toks, dtype=torch.long, device=r_lp.device)
                    n = len(c_toks)  # requests sharing ctx + cont[:-1] may split it differently: take the tail
                    picked = r_lp[0, -n:].gather(-1, target.unsqueeze(-1)).squeeze(-1)
                    answer = (float(picked.sum()), bool((greedy[-n:] == target).all()))
                    results.append(answer)
                    if r_str is not None:
                        self.cache_hook.add_partial("loglikelihood", r_str, answer)
                    pbar.update(1)
        pbar.close()
        if n_truncated:
            log.warning("%d request(s) longer than max_length=%d + 1 were truncated from the left",
                        n_truncated, self._max_length)
        return collator.get_original(results)

    def loglikelihood_rolling(self, requests: list, disable_tqdm: bool = False) -> list[float]:
        """Total log-likelihood of each string, scored in disjoint max_length windows that start from EOT."""
        windows: list[Request] = []
        owners: list[int] = []
        for i, (string,) in enumerate(tqdm([r.args for r in requests], disable=True)):
            pairs = lm_utils.get_rolling_token_windows(
                token_list=self.tok_encode(string), prefix_token=self.prefix_token_id,
                max_seq_len=self._max_length, context_len=1,
            )
            for ctx, cont in map(lm_utils.make_disjoint_window, pairs):
                windows.append((None, ctx, cont))
                owners.append(i)
        scores = self._loglikelihood_tokens(windows, disable_tqdm=disable_tqdm) if windows else []
        totals = [0.0] * len(requests)
        for owner, (logprob, _) in zip(owners, scores, strict=True):
            totals[owner] += logprob
        for req, total in zip(requests, totals, strict=True):
            self.cache_hook.add_partial("loglikelihood_rolling", (req.args[0],), total)
        return totals
