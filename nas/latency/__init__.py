"""Hardware latency: timing harness, per-unit lookup tables measured on the target, calibrated predictor.

    from nas.latency import load_predictor
    load_predictor("cpu_ort").predict(arch)        # ms on the shipped CPU table
    load_predictor("cpu_ort").predict_many(idx)    # a choice-index matrix [N, D] of the space

Imports no torch: building a table (`nas.latency.build.build_table`, `measure_archs`) does, through the timed
modules; the harness (`nas.latency.runtimes`) imports torch and onnxruntime where used.
"""

from nas.latency.counting import Cost, CountPredictor, arch_cost, count_flops, count_macs, count_params, gflops
from nas.latency.hardware import Hardware, TimingSettings, available_hardware, load_hardware
from nas.latency.predictor import Calibration, LatencyPredictor, load_predictor
from nas.latency.tables import LatencyTable
from nas.latency.units import Unit, decompose

__all__ = [
    "Calibration",
    "Cost",
    "CountPredictor",
    "Hardware",
    "LatencyPredictor",
    "LatencyTable",
    "TimingSettings",
    "Unit",
    "arch_cost",
    "available_hardware",
    "count_flops",
    "count_macs",
    "count_params",
    "decompose",
    "gflops",
    "load_hardware",
    "load_predictor",
]
