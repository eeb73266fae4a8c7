"""Evaluation / analysis sample sets drawn from the held-out token stream (protocol §1.6, D11).

* ANALYSIS_SET: `n` windows of `window` tokens drawn uniformly without replacement (seed 42) from the
  non-overlapping `window`-token windows of the held-out stream; M4-M6 use all of them, M3 the first
  `jacobian_samples` (protocol: 100 × 512, first 50).
* ATTN_SET(T_e): `n` windows of T_e tokens drawn the same way (M8/M9; protocol Q11: 16).
* PPL_SET: the first `n_tokens` tokens of the held-out stream cut into consecutive windows of the
  model's training length T, ragged tail dropped (M11, Q5; T−1 targets per window).

All functions return int64 token tensors (N, window) and are pure functions of (stream, sizes, seed).
"""

from __future__ import annotations

import os

import numpy as np
import torch

from ..config.errors import ConfigError


def heldout_stream(shard_dir: str | os.PathLike) -> np.ndarray:
    """The held-out split of a token shard directory (read-only 1-D memmap)."""
    from ..data.shards import open_tokens

    return open_tokens(shard_dir, "heldout")


def random_windows(tokens: np.ndarray, window: int, n: int, seed: int, key: str = "analysis.samples") -> torch.Tensor:
    """n distinct non-overlapping windows tokens[i·window:(i+1)·window], i drawn uniformly (seed) -> (n, window).

    The ids are a prefix of one seeded permutation of all windows, so the first k windows do not depend on n
    (the Jacobian's first 50 of the 100).
    """
    available = len(tokens) // window
    if n > available:
        raise ConfigError(
            f"{key}={n} windows of {window} tokens need {n * window} held-out tokens but the stream holds "
            f"{len(tokens)} ({available} windows): lower {key} or raise data.heldout_tokens"
        )
    ids = np.random.default_rng(seed).permutation(available)[:n]
    grid = np.asarray(tokens[: available * window]).reshape(available, window)
    return torch.from_numpy(grid[ids].astype(np.int64))


def analysis_set(tokens: np.ndarray, window: int = 512, n: int = 100, seed: int = 42) -> torch.Tensor:
    """ANALYSIS_SET (protocol §1.6) -> (n, window) int64."""
    return random_windows(tokens, window, n, seed, key="analysis.samples")


def attn_set(tokens: np.ndarray, T_e: int, n: int = 16, seed: int = 42) -> torch.Tensor:
    """ATTN_SET(T_e) (protocol §1.6, M8/M9) -> (n, T_e) int64."""
    return random_windows(tokens, T_e, n, seed, key="analysis.attention_samples")


def ppl_set(tokens: np.ndarray, T: int, n_tokens: int = 10_000_000) -> torch.Tensor:
    """PPL_SET (protocol M11): the first n_tokens held-out tokens as consecutive windows of T -> (n_tokens // T, T)."""
    if n_tokens > len(tokens):
        raise ConfigError(
            f"analysis.ppl_tokens={n_tokens} exceeds the {len(tokens)} held-out tokens: lower analysis.ppl_tokens "
            "or raise data.heldout_tokens"
        )
    n = n_tokens // T
    if n < 1:
        raise ConfigError(f"analysis.ppl_tokens={n_tokens} is shorter than one window of T={T}: raise it")
    return torch.from_numpy(np.asarray(tokens[: n * T]).astype(np.int64).reshape(n, T))
