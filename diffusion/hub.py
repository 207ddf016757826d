"""Talking to the Hugging Face Hub politely when it may not be there.

Without a network, ``from_pretrained("roberta-base")`` retries five times with back-off
(30-60 s of "Retrying in 8s" lines) before failing.  So before the first Hub load we probe
the endpoint once (DNS + TCP, a few seconds).  If it cannot be reached we switch this process
to offline mode, exactly as ``HF_HUB_OFFLINE=1`` would: copies already in the local cache
still load, anything else fails at once and the caller prints one line naming the offline
alternative.
"""

from __future__ import annotations

import os
import socket
from functools import lru_cache
from urllib.parse import urlparse

PROBE_TIMEOUT_S = 3.0


@lru_cache(maxsize=1)
def hub_reachable() -> bool:
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    url = urlparse(endpoint)
    host, port = url.hostname or "huggingface.co", url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S):
            return True
    except OSError:
        return False


def go_offline_if_unreachable() -> None:
    """Call before loading anything by Hub id. Does nothing if offline mode is already on."""
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        return
    if hub_reachable():
        return
    os.environ["HF_HUB_OFFLINE"] = "1"
    # The libraries read the variable once at import; update their copies too.
    import huggingface_hub.constants

    huggingface_hub.constants.HF_HUB_OFFLINE = True
    try:
        import datasets.config

        datasets.config.HF_HUB_OFFLINE = True
    except ImportError:
        pass
