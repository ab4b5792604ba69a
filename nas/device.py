"""`device=` of every command (predict, val, train, DDP workers): a user's text or index -> a checked torch.device."""

from __future__ import annotations

import torch

from nas.errors import ConfigError

__all__ = ["select_device"]


def select_device(device: str | int | torch.device) -> torch.device:
    """ "cpu", "cuda", "cuda:1", 0 or "0" (a CUDA index, as in ultralytics) -> torch.device, checked."""
    if isinstance(device, torch.device):
        dev = device
    else:
        text = str(device).strip().lower()
        try:
            dev = torch.device(f"cuda:{text}" if text.isdigit() else text)
        except RuntimeError:
            dev = None
        if dev is None or dev.type not in ("cpu", "cuda"):
            raise ConfigError(f"device={device!r}: expected 'cpu', 'cuda', 'cuda:N' or a CUDA index")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                f"device={device!r}: CUDA is not available here (torch.cuda.is_available() is False); use device=cpu"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(f"device={device!r}: only {torch.cuda.device_count()} CUDA device(s) present")
    return dev
