"""INT8 post-training quantization of an exported (fused) detector with onnxruntime's static QDQ quantization.

Pipeline: FP32 ONNX (fused: QARepVGG branches and BatchNorms folded) -> `quant_pre_process` (onnxruntime's
symbolic shape inference + graph optimization) -> calibration on N images (min-max, percentile or entropy
ranges of every activation) -> `quantize_static` in QDQ format: per-channel symmetric s8 weights, per-tensor
asymmetric u8 activations. The post-processing tail (DFL softmax/expectation, box decode, sigmoid: every node
after the last convolutions) stays in float, as super-gradients leaves it; `exclude` keeps further nodes float
(selective quantization, see `nas.quant.sensitivity`).

    from nas.quant import calibration_images, quantize_onnx
    images = calibration_images("synthetic", n=32, imgsz=640)
    quantize_onnx("yolo_nas_s.onnx", "yolo_nas_s_int8.onnx", images, method="percentile")
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nas.data import load_dataset
from nas.data.images import read_image
from nas.data.transforms import letterbox, to_tensor
from nas.errors import ConfigError

__all__ = [
    "CALIB_METHODS",
    "QuantResult",
    "calibration_images",
    "check_method",
    "conv_nodes",
    "cpu_has_vnni",
    "quantize_onnx",
    "tail_nodes",
]

CALIB_METHODS = ("minmax", "percentile", "entropy")  # onnxruntime's; ExportOptions lists the same for the CLI
DEFAULT_PERCENTILE = 99.999
# Histogram bins of the entropy (KL) calibration, TensorRT's 2048 into 128 quantized bins. onnxruntime's
# quantize_static cannot pass them (its entropy calibrator defaults to 128 bins into 128, where the only
# candidate threshold is the whole range: the result equals minmax), so `quantize_onnx` runs that calibrator
# itself and hands quantize_static the ranges through a calibration cache.
ENTROPY_BINS, ENTROPY_QUANTIZED_BINS = 2048, 128
# What gets quantized: the convolutions and the ops between them that have int8 kernels in onnxruntime
# (residual adds, concats, SPP max-pools, the neck's transposed-conv upsamplers, the shortcut `alpha` Mul).
OP_TYPES = ("Conv", "ConvTranspose", "Add", "Mul", "Concat", "MaxPool", "Resize", "Relu")


def check_method(method: str) -> str:
    if method not in CALIB_METHODS:
        raise ConfigError(f"calibration method={method!r}; expected one of {', '.join(CALIB_METHODS)}")
    return method


def cpu_has_vnni() -> bool:
    """Whether this x86 CPU has AVX-512 VNNI or AVX-VNNI (u8*s8 dot products without int16 saturation)."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "avx512_vnni" in flags or "avx_vnni" in flags


def calibration_images(
    data: Any, n: int, imgsz: int | tuple[int, int], split: str = "train", seed: int = 0
) -> np.ndarray:
    """N images drawn (seeded, without replacement) from a dataset split, letterboxed to imgsz x imgsz as
    the validator pads them: float32 RGB [N, 3, H, W] in [0, 1]. `data` is a name/YAML or a loaded dataset."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"calib={n!r}: expected a positive number of calibration images (e.g. 32)")
    if isinstance(data, (str, os.PathLike)):
        data = load_dataset(data, split=split)
    if not data.images:
        raise ConfigError(f"the {split} split has no images to calibrate on; pass data= with images")
    h, w = (imgsz, imgsz) if isinstance(imgsz, int) else imgsz
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(data.images), size=min(n, len(data.images)), replace=False)
    images = [letterbox(read_image(data.images[i].path), (h, w), auto=False)[0] for i in sorted(picks)]
    return to_tensor(images).numpy()


@dataclass
class QuantResult:
    """The written INT8 model and what went into it."""

    path: Path
    method: str
    calib_images: int
    quantized_convs: int
    float_nodes: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        kept = f", {len(self.float_nodes)} nodes kept float" if self.float_nodes else ""
        return (
            f"INT8 {self.path} ({self.path.stat().st_size / 1e6:.1f} MB): {self.quantized_convs} convolutions "
            f"quantized, {self.method} calibration on {self.calib_images} images{kept}"
        )


def _load(model: Any):
    import onnx

    return model if isinstance(model, onnx.ModelProto) else onnx.load(str(model))


def conv_nodes(model: Any) -> list[str]:
    """Names of the Conv / ConvTranspose nodes, in graph order: the layers of selective quantization."""
    return [n.name for n in _load(model).graph.node if n.op_type in ("Conv", "ConvTranspose")]


def tail_nodes(model: Any) -> list[str]:
    """Nodes with no convolution downstream that are not convolutions themselves: the post-processing tail."""
    graph = _load(model).graph
    consumers: dict[str, list[int]] = {}
    for i, node in enumerate(graph.node):
        for t in node.input:
            consumers.setdefault(t, []).append(i)
    feeds_conv = [False] * len(graph.node)
    for i in reversed(range(len(graph.node))):  # nodes are topologically sorted
        node = graph.node[i]
        feeds_conv[i] = any(
            graph.node[j].op_type in ("Conv", "ConvTranspose") or feeds_conv[j]
            for t in node.output
            for j in consumers.get(t, [])
        )
    return [n.name for n, f in zip(graph.node, feeds_conv) if not f and n.op_type not in ("Conv", "ConvTranspose")]


class _Reader:
    """onnxruntime CalibrationDataReader over ready feeds (one dict of input arrays per calibration run)."""

    def __init__(self, feeds: list[dict[str, np.ndarray]]):
        self.feeds, self.i = feeds, 0

    @classmethod
    def of_images(cls, name: str, images: np.ndarray, batch: int) -> _Reader:
        n = len(images) // batch * batch
        return cls([{name: np.ascontiguousarray(images[s : s + batch], dtype=np.float32)} for s in range(0, n, batch)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.i >= len(self.feeds):
            return None
        self.i += 1
        return self.feeds[self.i - 1]

    def rewind(self) -> None:
        self.i = 0

    def __len__(self) -> int:
        return len(self.feeds)


def _input_batch(model: Any, n_images: int) -> tuple[str, int]:
    inp = _load(model).graph.input[0]
    dim = inp.type.tensor_type.shape.dim[0]
    batch = dim.dim_value if dim.HasField("dim_value") and dim.dim_value > 0 else 1
    if n_images < batch:
        raise ConfigError(f"the graph's batch is {batch} but only {n_images} calibration images were given")
    return inp.name, batch


def preprocess(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """onnxruntime's quantization pre-processing: symbolic shape inference, optimization, ONNX shape inference."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    quant_pre_process(str(src), str(dst), skip_symbolic_shape=False)
    return Path(dst)


def _entropy_ranges(model_path: Path, reader: _Reader, cache: Path) -> Path:
    """Entropy-calibrated activation ranges of `model_path` written as onnxruntime's calibration cache."""
    from onnxruntime.quantization.calibrate import CalibrationMethod, create_calibrator, save_tensors_data

    with tempfile.TemporaryDirectory(prefix="nas-entropy-") as tmp:
        calibrator = create_calibrator(
            model_path,
            list(OP_TYPES),
            augmented_model_path=str(Path(tmp) / "augmented.onnx"),
            calibrate_method=CalibrationMethod.Entropy,
            extra_options={"num_bins": ENTROPY_BINS, "num_quantized_bins": ENTROPY_QUANTIZED_BINS},
        )
        with contextlib.redirect_stdout(io.StringIO()):  # it prints its bin counts
            calibrator.collect_data(reader)
            ranges = calibrator.compute_data()
        del calibrator
    save_tensors_data(ranges, cache)
    reader.rewind()
    return cache


def quantize_onnx(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    images: np.ndarray | list[dict[str, np.ndarray]] | None,
    *,
    method: str = "minmax",
    percentile: float = DEFAULT_PERCENTILE,
    per_channel: bool = True,
    reduce_range: bool = False,
    exclude: Iterable[str] = (),
    cache: str | os.PathLike | None = None,
    pre_processed: bool = False,
    float_tail: bool = True,
) -> QuantResult:
    """Write the static QDQ INT8 version of the FP32 ONNX `src` to `dst`.

    images: calibration inputs [N, 3, H, W] float32 (see `calibration_images`), or ready feeds (one
    {input name: array} per run, for graphs with several inputs); may be None when `cache` (onnxruntime's
    JSON calibration cache) already holds the ranges of the same model and method. `exclude`: node names
    kept in float on top of the post-processing tail (float_tail=False quantizes the tail too). reduce_range quantizes weights to 7 bits (onnxruntime's advice for u8*s8 on
    x86 CPUs without VNNI, where int16 accumulation can saturate).
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    check_method(method)
    if not (0 < percentile <= 100):
        raise ConfigError(f"percentile={percentile!r}: expected a number in (0, 100], e.g. 99.999")
    src, dst = Path(src), Path(dst)
    if not src.is_file():
        raise ConfigError(f"{src}: no such ONNX file to quantize; export it first (model.export(format='onnx'))")
    if images is None and (cache is None or not Path(cache).is_file()):
        raise ConfigError("quantize_onnx needs calibration images (or an existing calibration cache)")
    dst.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="nas-quant-") as tmp:
        pre = src if pre_processed else preprocess(src, Path(tmp) / "pre.onnx")
        model = _load(pre)
        float_nodes = sorted(set(tail_nodes(model) if float_tail else ()) | set(exclude))
        unknown = set(exclude) - {n.name for n in model.graph.node}
        if unknown:
            raise ConfigError(f"exclude: no node named {sorted(unknown)[0]!r} in {src} (see nas.quant.conv_nodes)")
        reader = None
        if isinstance(images, list):
            reader = _Reader(images)
        elif images is not None:
            name, batch = _input_batch(model, len(images))
            reader = _Reader.of_images(name, images, batch)
        extra = {"ActivationSymmetric": False, "WeightSymmetric": True}
        if method == "percentile":
            extra["CalibPercentile"] = percentile
        calib = {
            "minmax": CalibrationMethod.MinMax,
            "percentile": CalibrationMethod.Percentile,
            "entropy": CalibrationMethod.Entropy,
        }[method]
        logging.getLogger().setLevel(logging.ERROR)  # onnxruntime's quantizer warns through the root logger
        if method == "entropy" and (cache is None or not Path(cache).is_file()):
            cache = _entropy_ranges(pre, reader, Path(cache) if cache is not None else Path(tmp) / "entropy.json")
        tmp_dst = dst.with_name(f".{dst.name}.tmp{os.getpid()}")
        try:
            quantize_static(
                str(pre),
                str(tmp_dst),
                reader,
                quant_format=QuantFormat.QDQ,
                op_types_to_quantize=list(OP_TYPES),
                per_channel=per_channel,
                reduce_range=reduce_range,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                nodes_to_exclude=float_nodes,
                calibrate_method=calib,
                extra_options=extra,
                calibration_cache_path=str(cache) if cache is not None else None,
            )
            _copy_metadata(src, tmp_dst, method, len(images) if images is not None else None, float_nodes)
            os.replace(tmp_dst, dst)
        finally:
            tmp_dst.unlink(missing_ok=True)
    convs = conv_nodes(model)
    settings = {"per_channel": per_channel, "reduce_range": reduce_range, "weights": "s8", "activations": "u8"}
    if method == "percentile":
        settings["percentile"] = percentile
    n = len(images) if images is not None else -1
    return QuantResult(dst, method, n, len(set(convs) - set(exclude)), sorted(set(exclude)), settings)


def _copy_metadata(src: Path, dst: Path, method: str, n: int | None, float_nodes: Sequence[str]) -> None:
    """The FP32 model's metadata (names, arch, imgsz, ...) plus how it was quantized."""
    import onnx

    meta = {p.key: p.value for p in onnx.load(str(src), load_external_data=False).metadata_props}
    q = onnx.load(str(dst))
    del q.metadata_props[:]
    meta["int8"] = json.dumps({"method": method, "calib_images": n, "float_nodes": len(float_nodes)})
    for key, value in meta.items():
        q.metadata_props.add(key=key, value=value)
    onnx.save(q, str(dst))
