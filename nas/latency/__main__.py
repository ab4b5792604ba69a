"""`python -m nas.latency build|validate|calibrate|info|list key=value ...`: latency tables on the target hardware."""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass
from typing import Any

from nas.errors import ConfigError, NasError
from nas.latency.build import build_table
from nas.latency.calibrate import calibrate
from nas.latency.device import current_fingerprint, describe
from nas.latency.hardware import available_hardware, load_hardware
from nas.latency.predictor import load_predictor
from nas.latency.spacemap import SpaceMap
from nas.latency.tables import LatencyTable, build_command
from nas.latency.validate import validate
from nas.options import from_args
from nas.space.space import load_space

USAGE = """usage: python -m nas.latency COMMAND key=value ...

  build     hardware=NAME|PATH [space=yolo_nas] [limit=N] [calib=40] [seed=0] [out=PATH]
            time every unit of the space missing from the table, then calibrate on `calib` whole
            networks; resumable (run it again after an interruption)
  validate  hardware=NAME|PATH [n=100] [seed=1] [noise=20] [rounds=5] [space=yolo_nas] [out=DIR]
            measure held-out networks end to end, each interleaved with the released S; reports ms and
            ratio-to-S accuracy; writes DIR/validation.json and validation.png (resumable)
  calibrate hardware=NAME|PATH [n=8] [seed=0] [clock=wall|process] [space=yolo_nas] [out=PATH]
            measure n whole networks on this machine and re-fit the table's calibration for it
            (the per-unit table is kept; stored per machine in $NAS_LATENCY_DIR or ~/.cache);
            clock=process times CPU time, for a machine shared with other jobs
  info      hardware=NAME|PATH [space=yolo_nas] [out=PATH]   table status, ETA, predictions for S/M/L
  list                                              available hardware
"""


@dataclass(frozen=True)
class _Target:
    hardware: str | None = None  # required; checked in _parse with the list of targets
    space: str | None = None


@dataclass(frozen=True)
class _Build(_Target):
    limit: int | None = None
    calib: int | None = None
    seed: int | None = None
    out: str | None = None


@dataclass(frozen=True)
class _Validate(_Target):
    n: int | None = None
    seed: int | None = None
    noise: int | None = None
    rounds: int | None = None
    out: str | None = None


@dataclass(frozen=True)
class _Calibrate(_Target):
    n: int | None = None
    seed: int | None = None
    clock: str | None = None
    out: str | None = None


@dataclass(frozen=True)
class _Info(_Target):
    out: str | None = None


@dataclass(frozen=True)
class _List:
    pass


# command -> its keys; a key left out takes the default of the function the command calls
_COMMANDS: dict[str, type] = {
    "build": _Build,
    "validate": _Validate,
    "calibrate": _Calibrate,
    "info": _Info,
    "list": _List,
}


def _parse(command: str, args: list[str]) -> dict[str, Any]:
    given = asdict(from_args(_COMMANDS[command], args, command, prog="python -m nas.latency"))
    out = {k: v for k, v in given.items() if v is not None}
    if command != "list" and "hardware" not in out:
        raise ConfigError(f"{command}: hardware=... is required; available: {', '.join(available_hardware())}")
    return out


def _info(hardware: str, space: str = "yolo_nas", out: str | None = None) -> None:
    hw = load_hardware(hardware)
    sp = load_space(space)
    print(hw)
    table = LatencyTable.load(hw, out, must_exist=False)
    units = SpaceMap(sp, hw.input_hw).units()
    have = sum(u in table for u in units)
    print(f"table {table.path}: {have}/{len(units)} units of space {sp.name!r} measured")
    print(f"measured on: {describe(table.data.get('fingerprint'), hw.accelerator)}")
    print(f"this machine: {describe(current_fingerprint(hw.accelerator), hw.accelerator)}")
    fit = table.data.get("calibration", {}).get("fit")
    n_cal = len(table.calibration_archs)
    if have < len(units) or fit is None:
        eta = table.eta_s(units)
        left = f"; the missing units take ~{eta / 60:.0f} min at the rate measured so far" if eta else ""
        print(f"incomplete ({n_cal} calibration networks{left}); continue with `{build_command(hw, sp.name, out)}`")
        return
    pred = load_predictor(hw, space=sp, path=out)
    feats = ", ".join(f"{c:+.4g}*{f}" for f, c in zip(pred.calibration.features, pred.calibration.coef))
    cal = pred.calibration
    print(f"calibration ({pred.calibration_source}) on {cal.n} networks: {cal.intercept:+.4g} {feats}")
    print(f"  (leave-one-out relative RMSE {pred.calibration.loo_rel_rmse:.2%})")
    for name, arch in sp.references.items():
        print(f"  {name}: {pred.predict(arch):.2f} ms predicted")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help") or args[0] not in _COMMANDS:
        print(USAGE, file=sys.stderr)
        return 2
    command = args[0]
    try:
        kw = _parse(command, args[1:])
        if command == "list":
            for name in available_hardware():
                hw = load_hardware(name)
                try:
                    table = "table shipped" if hw.table_path.is_file() else f"no table yet: {build_command(hw)}"
                except ConfigError:  # cuda_fp16 without a GPU: its table is named after the device found
                    table = f"table {hw.table.replace('{device}', '<gpu>')}, named after the GPU found (none here)"
                print(f"{name:<12} {hw}; {table}")
        elif command == "build":
            table = build_table(**kw)
            print(f"{table.path}: {len(table)} units, {len(table.calibration_archs)} calibration networks")
            if kw.get("limit") is not None:
                _info(kw["hardware"], kw.get("space", "yolo_nas"), kw.get("out"))
            if "fit" in table.data["calibration"]:
                print(f"calibration: {table.data['calibration']['fit']}")
        elif command == "calibrate":
            r = calibrate(kw.pop("hardware"), path=kw.pop("out", None), **kw)
            for net in r["networks"]:
                print(
                    f"  {net['name']}: measured {net['measured_ms']:.1f} ms, shipped calibration "
                    f"{net['shipped_ms']:.1f} ms ({net['shipped_ms'] / net['measured_ms'] - 1:+.0%}), "
                    f"adapted {net['adapted_ms']:.1f} ms ({net['adapted_ms'] / net['measured_ms'] - 1:+.1%})"
                )
            fit = r["fit"]
            print(
                f"{r['hardware']} on {r['device']}: {r['method']} fit on {fit['n']} networks in "
                f"{r['measure_seconds']:.0f} s ({r['measure_cpu_seconds']:.0f} s CPU), leave-one-out relative RMSE {fit['loo_rel_rmse']:.1%}; wrote {r['path']}"
            )
        elif command == "validate":
            r = validate(**kw)
            nf = r["noise_floor"]
            for form, unit in (("absolute", "ms"), ("ratio", f"ratio to {r['reference']}")):
                p = r[form]["predictor"]
                print(
                    f"{r['hardware']['name']} ({unit}): {p['within_5pct']:.1%} within ±5%, {p['within_10pct']:.1%} "
                    f"within ±10%, MAPE {p['mape_pct']:.2f}%, Kendall τ {p['kendall_tau']:.3f} (n={p['n']})"
                )
                if nf[form]["n"]:
                    print(f"  noise floor: {nf[form]['within_5pct']:.0%} of {nf[form]['n']} re-measured within ±5%")
                for name, b in r[form].items():
                    if name != "predictor":
                        print(f"  baseline {name}: {b['within_5pct']:.1%} within ±5%, τ {b['kendall_tau']:.3f}")
            print(f"wrote {r['out']}/validation.json and validation.png")
        else:
            _info(**kw)
    except NasError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; what was measured is saved, run the same command to continue", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
