"""Training of one run with Lightning (protocol §1.1 data, §1.5 optimisation, M1/M2/M10 logging, D3).

Public entry points: `train_run` (what `sparsecod train` calls) and `read_log` (the run's logs as
DataFrames). Heavy imports (torch, lightning) happen in the submodules.
"""

from .logs import read_log


def train_run(*args, **kwargs):
    """See `sparsecod.train.run.train_run`."""
    from .run import train_run as _train_run

    return _train_run(*args, **kwargs)


__all__ = ["read_log", "train_run"]
