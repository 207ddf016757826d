"""Which device to run on, and timing that means what it says on a GPU."""

from __future__ import annotations

import torch


def pick_device(name: str | None) -> torch.device:
    """``--device`` as given, else cuda when there is one, else cpu."""
    if name:
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so a timestamp means the work is done (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
