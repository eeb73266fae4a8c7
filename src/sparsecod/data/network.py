"""Fast "can we reach the Hugging Face Hub?" check, so offline runs fail at once instead of retrying ~20 s.

Offline when huggingface_hub is in its own offline mode (`huggingface_hub.is_offline_mode()`: HF_HUB_OFFLINE or
TRANSFORMERS_OFFLINE at its import, or set programmatically), when HF_HUB_OFFLINE / HF_DATASETS_OFFLINE (datasets'
switch) is set to one of huggingface_hub's true values since, or when a TCP connection to the Hub endpoint
(HF_ENDPOINT, default https://huggingface.co; the HTTPS proxy instead when one is set) cannot be opened
within a few seconds. DNS resolution runs in a daemon thread so a hanging resolver cannot stall the caller.
"""

from __future__ import annotations

import os
import socket
import threading
from functools import lru_cache
from urllib.parse import urlsplit

OFFLINE_VARS = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")


class OfflineError(ConnectionError):
    """A Hub resource was requested without network; the message names the config key to use instead."""


def offline_reason(timeout: float = 3.0) -> str | None:
    """Why the Hub is unreachable (offline mode, an env var or a failed connection), or None when it is reachable."""
    from huggingface_hub import constants, is_offline_mode

    for var in OFFLINE_VARS:  # named first: also when set after huggingface_hub read them at import
        if os.environ.get(var, "").strip().upper() in constants.ENV_VARS_TRUE_VALUES:
            return f"{var}={os.environ[var]} is set"
    if is_offline_mode():
        return "huggingface_hub is in offline mode (HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE)"
    host, port = _probe_target()
    return _probe(host, port, timeout)


def _probe_target() -> tuple[str, int]:
    proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")
    url = urlsplit(proxy if proxy else os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    default = 443 if url.scheme == "https" else 80
    return url.hostname or "huggingface.co", url.port or default


@lru_cache(maxsize=8)
def _probe(host: str, port: int, timeout: float) -> str | None:
    result: list[str | None] = []

    def connect() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                result.append(None)
        except OSError as err:
            result.append(f"cannot connect to {host}:{port} ({err})")

    thread = threading.Thread(target=connect, daemon=True)
    thread.start()
    thread.join(timeout + 0.5)
    return result[0] if result else f"no answer from {host}:{port} within {timeout:.0f} s"
