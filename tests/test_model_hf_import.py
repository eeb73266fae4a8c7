"""Issue 19: any transformers LlamaForCausalLM checkpoint imported into our model and analysed end to end.

A random Llama saved with save_pretrained (GQA, non-default θ and eps, tied and untied embeddings) must give the
same fp32 logits after import; what cannot be reproduced exactly is refused with one line; `sparsecod analyze
DIR --out OUT` imports, tokenizes its held-out text with its own tokenizer.json and writes the metric files; an
exported sparsecod model analysed from its export directory equals its native analysis.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from _data_testutil import synthetic_docs, write_jsonl
from sparsecod.cli import main
from sparsecod.data.tokenizer import train_bpe, vocab_size
from sparsecod.evaluation.export_hf import export_hf
from sparsecod.external import EXTERNAL_ANALYSES
from sparsecod.metrics.runner import analyze
from sparsecod.metrics.settings import AnalysisSettings
from sparsecod.model import ModelConfig, Transformer, load_model, save_model
from sparsecod.model.hf_llama import LlamaImportError, import_llama, model_config

transformers = pytest.importorskip("transformers")
from tokenizers import Tokenizer  # noqa: E402

META_KEYS = {"metric", "run_id", "heldout", "precision", "device", "model", "n_layers", "d_model", "settings",
             "seconds", "files"}  # written by metrics.runner beside the numbers
SETTINGS = {"window": 16, "samples": 4, "jacobian_samples": 2, "ppl_tokens": 256, "batch_tokens": 64,
            "jacobian_batch_tokens": 32, "attention_lengths": [16], "attention_samples": 1,
            "init_control": False}  # a bare model directory has no run.yaml (seed) to rebuild step 0 from


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, Path]:
    """(jsonl corpus, a 300-token byte-level BPE tokenizer.json trained on it)."""
    root = tmp_path_factory.mktemp("corpus")
    docs = synthetic_docs(600)
    return write_jsonl(root / "docs.jsonl", docs), train_bpe(docs, 300, cache_dir=root / "cache")


def _data_section(corpus: Path) -> dict:
    return {"corpus": str(corpus), "tokenizer": "unused", "train_tokens": 1000, "heldout_tokens": 3000,
            "heldout_fraction": 0.3}


def _save_llama(path: Path, tokenizer: Path, tied: bool, **overrides) -> "transformers.LlamaForCausalLM":
    kw = dict(vocab_size=320, hidden_size=32, intermediate_size=48, num_hidden_layers=3, num_attention_heads=4,
              num_key_value_heads=2, rms_norm_eps=1e-5, rope_theta=50_000.0, max_position_embeddings=64,
              tie_word_embeddings=tied, initializer_range=0.2)
    torch.manual_seed(0)
    hf = transformers.LlamaForCausalLM(transformers.LlamaConfig(**{**kw, **overrides})).eval()
    with torch.no_grad():  # non-trivial norm gains, so a mix-up of norms would show
        for name, p in hf.named_parameters():
            if name.endswith("norm.weight"):
                p.uniform_(0.5, 1.5)
    hf.save_pretrained(path)
    (path / "tokenizer.json").write_bytes(tokenizer.read_bytes())
    return hf


@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
def test_imported_llama_logits_equal_transformers(tmp_path, corpus, tied) -> None:
    hf = _save_llama(tmp_path / "ckpt", corpus[1], tied)
    import_llama(tmp_path / "ckpt", tmp_path / "model")
    ours = load_model(tmp_path / "model")
    cfg = ours.cfg
    assert (cfg.n_kv_heads, cfg.rope_theta, cfg.norm_eps, cfg.padded_vocab) == (2, 50_000.0, 1e-5, 320)
    assert cfg.vocab_size == vocab_size(Tokenizer.from_file(str(corpus[1]))) <= 320
    idx = torch.randint(0, 300, (2, 48), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want, got = hf(input_ids=idx).logits, ours(idx).logits
    assert got.dtype == want.dtype == torch.float32
    torch.testing.assert_close(got, want, rtol=0, atol=1e-4)
    assert json.loads((tmp_path / "model" / "config.json").read_text())["max_position_embeddings"] == 64


REFUSED = {
    "rope_scaling": ({"rope_parameters": {"rope_type": "llama3", "rope_theta": 5e5, "factor": 8.0,
                                          "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                          "original_max_position_embeddings": 32}}, "rope type 'llama3'"),
    "attention_bias": ({"attention_bias": True}, "attention_bias=true"),
    "mlp_bias": ({"mlp_bias": True}, "mlp_bias=true"),
    "act": ({"hidden_act": "gelu"}, "hidden_act='gelu'"),
    "head_dim": ({"head_dim": 16}, "head_dim=16"),
}


@pytest.mark.parametrize("name", list(REFUSED))
def test_refuses_what_it_cannot_reproduce_in_one_line(tmp_path, corpus, name, capsys) -> None:
    overrides, reason = REFUSED[name]
    _save_llama(tmp_path / "ckpt", corpus[1], False, **overrides)
    with pytest.raises(LlamaImportError, match="unsupported Llama setting") as err:
        import_llama(tmp_path / "ckpt", tmp_path / "model")
    assert reason in str(err.value) and "\n" not in str(err.value)
    capsys.readouterr()  # drop save_pretrained's progress output
    assert main(["analyze", str(tmp_path / "ckpt"), "--out", str(tmp_path / "out"), "--metric", "causal"]) == 2
    line = capsys.readouterr().err.strip()
    assert line.startswith("sparsecod analyze: error: unsupported Llama setting") and "\n" not in line
    assert not (tmp_path / "out" / "model").exists()


def test_refuses_other_architectures_extra_weights_and_pickles(tmp_path, corpus) -> None:
    base = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 32,
            "num_attention_heads": 4, "num_hidden_layers": 1, "intermediate_size": 8, "vocab_size": 320}
    with pytest.raises(LlamaImportError, match="only LlamaForCausalLM"):
        model_config({**base, "model_type": "mistral", "architectures": ["MistralForCausalLM"]}, 300)
    with pytest.raises(LlamaImportError, match="tokenizer.json has 400 tokens"):
        model_config(base, 400)
    _save_llama(tmp_path / "ckpt", corpus[1], False)
    from safetensors.torch import load_file, save_file

    state = load_file(str(tmp_path / "ckpt" / "model.safetensors"))
    save_file({**state, "model.layers.0.self_attn.q_proj.bias": torch.zeros(32)}, str(tmp_path / "ckpt" / "model.safetensors"))
    with pytest.raises(LlamaImportError, match="unexpected weights .*q_proj.bias"):
        import_llama(tmp_path / "ckpt", tmp_path / "model")
    (tmp_path / "ckpt" / "model.safetensors").rename(tmp_path / "ckpt" / "pytorch_model.bin")
    with pytest.raises(LlamaImportError, match="only pickled pytorch_model.bin"):
        import_llama(tmp_path / "ckpt", tmp_path / "model")


def test_cli_analyses_a_checkpoint_end_to_end(tmp_path, corpus) -> None:
    """Import, held-out text tokenized with the checkpoint's tokenizer, metric files under --out."""
    _save_llama(tmp_path / "ckpt", corpus[1], True)
    config = tmp_path / "workflow.yaml"
    config.write_text(yaml.safe_dump({"data": _data_section(corpus[0]), "analysis": SETTINGS}))
    out = tmp_path / "out"
    assert main(["analyze", str(tmp_path / "ckpt"), "--out", str(out), "--metric", ",".join(EXTERNAL_ANALYSES),
                 "--config", str(config), "--device", "cpu", "--no-progress", "--figures", "--suite-out",
                 str(out / "analysis" / "suite.json")]) == 0
    suite = json.loads((out / "analysis" / "suite.json").read_text())
    assert sorted(suite["metrics"]) == sorted(EXTERNAL_ANALYSES) and suite["files"]["figures"] == ["layers.pdf", "layers.png"]
    assert (out / "figures" / "layers.png").read_bytes().startswith(b"\x89PNG")
    meta = json.loads((out / "heldout" / "meta.json").read_text())
    assert meta["tokenizer"] == str(tmp_path / "ckpt" / "tokenizer.json") and meta["splits"]["heldout"]["tokens"] > 0
    for metric in EXTERNAL_ANALYSES:
        assert (out / "analysis" / f"{metric}.json").is_file(), metric
    ppl = json.loads((out / "analysis" / "perplexity.json").read_text())
    assert ppl["settings"]["ppl_seq_len"] == 64  # the checkpoint's max_position_embeddings
    assert math.isfinite(ppl["ppl"]) and ppl["run_id"] == "out"


def test_export_then_analyse_equals_native_analysis(tmp_path, corpus) -> None:
    """A sparsecod model -> export-hf -> `sparsecod analyze EXPORT --out` gives the native analysis' numbers."""
    from sparsecod.data.config import DataConfig
    from sparsecod.data.shards import build_shards

    tok = corpus[1]
    cfg = ModelConfig(n_layers=3, d_model=32, n_heads=4, n_kv_heads=2, d_ff=48, norm_eps=1e-6, rope_theta=5000.0,
                      vocab_size=vocab_size(Tokenizer.from_file(str(tok))), pad_vocab_to=64, init_std=0.2)
    torch.manual_seed(3)
    save_model(Transformer(cfg).eval(), tmp_path / "run" / "model", tokenizer_file=tok)
    shard = tmp_path / "shard"
    build_shards(DataConfig.from_dict({**_data_section(corpus[0]), "tokenizer": str(tok)}), shard, progress=False)
    metrics = ",".join(EXTERNAL_ANALYSES)
    settings = AnalysisSettings.from_mapping({**SETTINGS, "ppl_seq_len": 32})
    analyze(tmp_path / "run", metrics, shard, settings, device="cpu", progress=False)
    export_hf(tmp_path / "run", tmp_path / "export", max_positions=32)
    config = tmp_path / "workflow.yaml"
    config.write_text(yaml.safe_dump({"data": _data_section(corpus[0]), "analysis": SETTINGS}))
    assert main(["analyze", str(tmp_path / "export"), "--out", str(tmp_path / "ext"), "--metric", metrics,
                 "--config", str(config), "--device", "cpu", "--no-progress"]) == 0
    for metric in EXTERNAL_ANALYSES:
        native = json.loads((tmp_path / "run" / "analysis" / f"{metric}.json").read_text())
        external = json.loads((tmp_path / "ext" / "analysis" / f"{metric}.json").read_text())
        numbers = pd.json_normalize({k: v for k, v in native.items() if k not in META_KEYS}).iloc[0].to_dict()
        external = pd.json_normalize({k: v for k, v in external.items() if k not in META_KEYS}).iloc[0].to_dict()
        assert numbers and set(numbers) == set(external), metric  # nested keys (the intervals `ci`) flattened
        for key, value in numbers.items():
            if value is None or isinstance(value, str):  # e.g. the interval's method, a missing interval
                assert external[key] == value, (metric, key)
            else:
                np.testing.assert_allclose(np.asarray(external[key], float), np.asarray(value, float), rtol=1e-5,
                                           atol=1e-6, equal_nan=True, err_msg=f"{metric} {key}")  # None -> NaN
        table = tmp_path / "run" / "analysis" / f"{metric}.parquet"
        if table.is_file():
            pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "ext" / "analysis" / f"{metric}.parquet"),
                                          pd.read_parquet(table), rtol=1e-5, atol=1e-6)
    assert json.loads((tmp_path / "ext" / "analysis" / "causal.json").read_text())["heldout"] == str(tmp_path / "ext" / "heldout")


def test_lns_model_exports_as_a_plain_llama_and_imports_back(tmp_path, corpus) -> None:
    """LayerNorm Scaling folds into the norm gains on export (one mapping, model/hf_llama.py) and survives a round trip."""
    from sparsecod.model.hf_llama import to_llama
    from sparsecod.evaluation.export_hf import llama_config

    cfg = ModelConfig(n_layers=4, d_model=32, n_heads=4, n_kv_heads=2, d_ff=48, vocab_size=300, pad_vocab_to=64,
                      norm_scaling="lns", init_std=0.2)
    torch.manual_seed(5)
    ours = Transformer(cfg).eval()
    hf = transformers.LlamaForCausalLM(transformers.LlamaConfig(**llama_config(cfg, 0, None, 64))).eval()
    hf.load_state_dict(to_llama(ours.state_dict(), cfg), strict=True)
    idx = torch.randint(0, 300, (2, 32), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(hf(input_ids=idx).logits, ours(idx).logits, rtol=0, atol=1e-4)
        hf.save_pretrained(tmp_path / "ckpt")
        (tmp_path / "ckpt" / "tokenizer.json").write_bytes(corpus[1].read_bytes())
        back = load_model(import_llama(tmp_path / "ckpt", tmp_path / "model"))
        assert back.cfg.norm_scaling == "none"  # the factors now live in the gains
        torch.testing.assert_close(back(idx).logits[..., :300], ours(idx).logits[..., :300], rtol=0, atol=1e-4)
