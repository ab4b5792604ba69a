"""Per-machine calibrations of shipped tables: where they are stored, and whether one holds on this machine.

One JSON per (hardware, device fingerprint) in `$NAS_LATENCY_DIR`, else `$XDG_CACHE_HOME/yolo-nas-search/
latency/` (`~/.cache/...`), written atomically by `python -m nas.latency calibrate` beside, never over, the
shipped table. It holds when its fingerprint is this machine's and it was fitted against this very table.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from nas.errors import ConfigError
from nas.latency.device import current_fingerprint, fingerprint_id, mismatches
from nas.latency.hardware import Hardware
from nas.latency.tables import LatencyTable, build_command

__all__ = ["FORMAT", "calibrate_command", "load_user_fit", "table_digest", "user_calibration_path", "user_dir"]

FORMAT = 1


def user_dir() -> Path:
    """Where per-machine calibrations live: $NAS_LATENCY_DIR, else the user's cache directory."""
    if os.environ.get("NAS_LATENCY_DIR"):
        return Path(os.environ["NAS_LATENCY_DIR"]).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "yolo-nas-search" / "latency"


def calibrate_command(hw: Hardware) -> str:
    target = build_command(hw).split("hardware=", 1)[1]
    return f"python -m nas.latency calibrate hardware={target}"


def user_calibration_path(hw: Hardware, fingerprint: dict[str, Any] | None = None) -> Path:
    fp = fingerprint if fingerprint is not None else current_fingerprint(hw.accelerator)
    return user_dir() / f"{hw.name}.{fingerprint_id(fp, hw)}.calibration.json"


def table_digest(table: LatencyTable) -> str:
    """Hash of the unit timings a calibration was fitted against (a rebuilt table invalidates it)."""
    units = {k: v["median_ms"] for k, v in table.units.items()}
    return hashlib.sha256(json.dumps(units, sort_keys=True).encode()).hexdigest()[:16]


def _comparable(settings: Any) -> Any:
    """Settings that change what a latency means (the timing loop's repeats and clock do not)."""
    return {k: v for k, v in settings.items() if k != "timing"} if isinstance(settings, dict) else settings


def load_user_fit(table: LatencyTable, fingerprint: dict[str, Any]) -> tuple[dict[str, Any], Path] | None:
    """This machine's calibration of `table`, if one was made here for this very table; else None."""
    hw = table.hardware
    path = user_calibration_path(hw, fingerprint)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        if data.get("format") != FORMAT:
            return None
        if mismatches(data.get("fingerprint"), fingerprint, hw) or data.get("table_digest") != table_digest(table):
            return None
        if _comparable(data.get("settings")) != _comparable(json.loads(json.dumps(hw.settings))):
            return None
        return dict(data["fit"]), path
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as e:
        raise ConfigError(
            f"{path}: not a valid calibration file ({e}); delete it and run `{calibrate_command(hw)}`"
        ) from None
