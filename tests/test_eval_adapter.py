"""lm-eval adapter `sparsecod` (issue 5, protocol M12): log-likelihoods equal a direct computation with the model."""

from __future__ import annotations

import pytest
import torch
from lm_eval.api.instance import Instance
from lm_eval.api.registry import get_model

from _eval_testutil import GQA, MOE, needs_neox, save_run
from sparsecod.evaluation.adapter import SparsecodLM
from sparsecod.model import load_model

pytestmark = needs_neox


def direct(model, ctx: list[int], cont: list[int], max_length: int) -> tuple[float, bool]:
    """One window of the last max_length + 1 tokens, one forward, sum of the continuation's log-probs (fp64)."""
    window = (ctx + cont)[-(max_length + 1):]
    with torch.no_grad():
        logits = model(torch.tensor([window[:-1]])).logits[0].double()
    lp = logits.log_softmax(-1)
    n = len(cont)
    pos = torch.arange(len(window) - 1 - n, len(window) - 1)
    target = torch.tensor(window[-n:])
    return float(lp[pos, target].sum()), bool((lp[pos].argmax(-1) == target).all())


def greedy_tokens(model, ctx: list[int], n: int) -> list[int]:
    out = list(ctx)
    with torch.no_grad():
        for _ in range(n):
            out.append(int(model(torch.tensor([out])).logits[0, -1].argmax()))
    return out[len(ctx):]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return save_run(tmp_path_factory.mktemp("run"), GQA, seq_len=64)


def _requests(model) -> list[tuple[None, list[int], list[int]]]:
    g = torch.Generator().manual_seed(3)

    def toks(n: int) -> list[int]:
        return torch.randint(0, 50280, (n,), generator=g).tolist()

    shared = toks(9)
    a, b, c, d = toks(4)
    greedy_ctx = toks(6)
    reqs = [
        (toks(5), toks(3)),
        (toks(100), toks(4)),          # 104 tokens > max_length + 1 = 17: truncated from the left
        (shared, [11]), (shared, [12]), (shared, [13]),   # one-token continuations of one context
        ([a, b], [c, d]), ([a], [b, c, d]),               # same ctx + cont[:-1], split differently
        (greedy_ctx, greedy_tokens(model, greedy_ctx, 3)),  # the greedy decode: is_greedy must be True
        (toks(1), toks(16)),            # continuation filling the whole window
        (toks(12), toks(1)),
    ]
    return [(None, ctx, cont) for ctx, cont in reqs]


@pytest.mark.parametrize("batch_size", [1, 3, 64])
def test_loglikelihood_tokens_match_direct(run, batch_size: int) -> None:
    lm = SparsecodLM(checkpoint=run, batch_size=batch_size, max_length=16, device="cpu", progress=False)
    model = load_model(run)
    reqs = _requests(model)
    got = lm._loglikelihood_tokens(reqs, disable_tqdm=True)
    want = [direct(model, ctx, cont, 16) for _, ctx, cont in reqs]
    assert len(got) == len(want)
    for (lp, greedy), (lp_ref, greedy_ref) in zip(got, want, strict=True):
        assert lp == pytest.approx(lp_ref, rel=1e-5, abs=1e-4)
        assert greedy == greedy_ref
    assert got[7][1] is True and not all(g for _, g in got)
    # the truncated request really lost its left context: scoring it untruncated gives another number
    _, ctx, cont = reqs[1]
    assert abs(got[1][0] - direct(model, ctx, cont, 200)[0]) > 1e-3


def test_loglikelihood_strings_and_empty_context(run) -> None:
    lm = SparsecodLM(checkpoint=run, batch_size=4, device="cpu", progress=False)
    model = load_model(run)
    tok = lm.hf_tokenizer
    pairs = [("Question: What is the capital of France?\nAnswer:", " Paris"),
             ("The cat sat on the", " mat and slept."),
             ("", "Hello world")]
    instances = [Instance("loglikelihood", {}, pair, i) for i, pair in enumerate(pairs)]
    got = lm.loglikelihood(instances, disable_tqdm=True)
    for (ctx, cont), (lp, greedy) in zip(pairs, got, strict=True):
        if ctx:
            ctx_ids = tok.encode(ctx, add_special_tokens=False).ids
            cont_ids = tok.encode(ctx + cont, add_special_tokens=False).ids[len(ctx_ids):]
        else:  # empty context: conditioned on EOS (<|endoftext|> = 50279), the model's document separator
            ctx_ids, cont_ids = [50279], tok.encode(cont, add_special_tokens=False).ids
        assert lp == pytest.approx(direct(model, ctx_ids, cont_ids, 64)[0], rel=1e-5, abs=1e-4)
    assert lm.eot_token_id == 50279


def test_loglikelihood_rolling_matches_direct_windows(run) -> None:
    M = 16
    lm = SparsecodLM(checkpoint=run, batch_size=5, max_length=M, device="cpu", progress=False)
    model = load_model(run)
    texts = ["The quick brown fox jumps over the lazy dog. " * 6, "Short text.", ""]
    got = lm.loglikelihood_rolling([Instance("loglikelihood_rolling", {}, (t,), i) for i, t in enumerate(texts)],
                                   disable_tqdm=True)
    for text, total in zip(texts, got, strict=True):
        tokens = lm.tok_encode(text)
        want = 0.0
        for start in range(0, len(tokens), M):  # every token predicted once, each window with full context
            chunk = tokens[start:start + M]
            ctx = [50279] if start == 0 else tokens[start + len(chunk) - M - 1:start]
            want += direct(model, ctx, chunk, M)[0]
        assert total == pytest.approx(want, rel=1e-5, abs=1e-4)
    assert len(lm.tok_encode(texts[0])) > 3 * M and got[2] == 0.0


def test_moe_padding_invariance(tmp_path) -> None:
    run = save_run(tmp_path / "moe", MOE, seq_len=None)
    lm = SparsecodLM(checkpoint=run, batch_size=8, device="cpu", progress=False)
    model = load_model(run)
    g = torch.Generator().manual_seed(5)
    reqs = [(None, torch.randint(0, 50280, (n,), generator=g).tolist(),
             torch.randint(0, 50280, (m,), generator=g).tolist()) for n, m in [(3, 2), (20, 5), (7, 1), (11, 3)]]
    got = lm._loglikelihood_tokens(reqs, disable_tqdm=True)
    for (_, ctx, cont), (lp, _) in zip(reqs, got, strict=True):
        assert lp == pytest.approx(direct(model, ctx, cont, 2048)[0], rel=1e-5, abs=1e-4)


def test_max_length_defaults_and_args(tmp_path, run) -> None:
    assert SparsecodLM(checkpoint=run, device="cpu").max_length == 64          # run.yaml train.seq_len
    assert SparsecodLM(checkpoint=run, device="cpu", max_length="32").max_length == 32
    bare = save_run(tmp_path / "bare", GQA, seq_len=None)
    assert SparsecodLM(checkpoint=bare, device="cpu").max_length == 2048
    with pytest.raises(ValueError, match="batch_size"):
        SparsecodLM(checkpoint=run, batch_size="auto")
    with pytest.raises(ValueError, match="unknown sparsecod model_args"):
        SparsecodLM(checkpoint=run, pretrained="gpt2")
    with pytest.raises(FileNotFoundError, match="tokenizer.json"):
        SparsecodLM(checkpoint=tmp_path)


def test_registered_and_no_generation(run) -> None:
    assert get_model("sparsecod") is SparsecodLM
    lm = SparsecodLM.create_from_arg_string(f"checkpoint={run},batch_size=2", {"device": "cpu", "max_batch_size": None})
    assert lm.batch_size == 2 and lm.device == torch.device("cpu")
    with pytest.raises(NotImplementedError, match="generate_until"):
        lm.generate_until([Instance("generate_until", {}, ("Hi", {"until": ["\n"]}), 0)])


def test_bfloat16_weights_fp32_logsoftmax(run) -> None:
    lm32 = SparsecodLM(checkpoint=run, device="cpu", progress=False)
    lm16 = SparsecodLM(checkpoint=run, device="cpu", dtype="bfloat16", progress=False)
    assert next(lm16.model.parameters()).dtype == torch.bfloat16
    reqs = [(None, [11, 12, 13, 14], [15, 16]), (None, [7], [8, 9, 10])]
    for (a, _), (b, _) in zip(lm32._loglikelihood_tokens(reqs, True), lm16._loglikelihood_tokens(reqs, True),
                              strict=True):
        assert b == pytest.approx(a, rel=0.05)
