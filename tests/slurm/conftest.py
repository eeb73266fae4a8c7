"""`slurm_cluster`: a real single-node Slurm cluster for the whole test session (issue 8).

Tests that use it are marked `@pytest.mark.slurm`. Without root, or without the packages and apt-get, they
skip with the reason; under CI=true they fail instead. The cluster is stopped at the end of the session
(also after failures) unless it was already running before the session started.
"""

import pytest

from _slurm_testutil import (
    SlurmCluster,
    cluster_running,
    cluster_unavailable_reason,
    skip_or_fail,
    start_cluster,
    stop_cluster,
)


@pytest.fixture(scope="session")
def slurm_cluster():
    reason = cluster_unavailable_reason()
    if reason:
        skip_or_fail(reason)
    was_running = cluster_running()
    try:
        start_cluster()
        yield SlurmCluster()
    finally:
        if not was_running:
            stop_cluster()
