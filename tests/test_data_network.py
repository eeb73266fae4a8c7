"""The Hub-offline check (issue 17.5): huggingface_hub's own offline mode and truth values decide, before any probe."""

from __future__ import annotations

import socket

import pytest

from sparsecod.data import network


@pytest.fixture
def online_env(monkeypatch):
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HTTPS_PROXY", "https_proxy"):
        monkeypatch.delenv(var, raising=False)
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    network._probe.cache_clear()
    return monkeypatch


def test_hub_offline_mode_is_offline(online_env) -> None:
    import huggingface_hub.constants

    online_env.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # what HF_HUB_OFFLINE=1 at import sets
    assert network.offline_reason() == "huggingface_hub is in offline mode (HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE)"


@pytest.mark.parametrize("value, offline", [("1", True), ("yes", True), ("ON", True), ("0", False), ("off", False)])
def test_env_values_use_huggingface_hubs_truth_values(online_env, value, offline) -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:  # a reachable "Hub": only the variable decides
        online_env.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.getsockname()[1]}")
        online_env.setenv("HF_DATASETS_OFFLINE", value)
        reason = network.offline_reason()
    assert (reason == f"HF_DATASETS_OFFLINE={value} is set") if offline else reason is None


def test_unreachable_endpoint_is_offline(online_env) -> None:
    online_env.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens on the discard port
    assert network.offline_reason(timeout=1.0).startswith("cannot connect to 127.0.0.1:9")
