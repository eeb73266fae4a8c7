"""Worker processes for corpus parsing and tokenization.

A `spawn` ProcessPoolExecutor: no fork of a process that already runs tokenizers/datasets threads, and a
worker that cannot start raises BrokenProcessPool instead of hanging.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any


def process_pool(workers: int, initializer: Callable[..., Any] | None = None,
                 initargs: tuple = ()) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=initializer, initargs=initargs)
