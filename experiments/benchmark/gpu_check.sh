#!/usr/bin/env bash
# The TensorRT path on a lent GPU machine (one run, < 10 minutes): the gpu-marked export tests, then the engine rows
# of `nas benchmark` on a tiny checkpoint. Needs the tensorrt package there (python -c "import tensorrt"); without it
# the tests skip and the rows report what is missing. Needs the project's dependencies importable there (the GPU
# machines have no registry: carry wheels, /work/shared/reference/deps.md). Results land in $OUT. Not yet run.
set -euo pipefail
OUT=${OUT:-runs/gpu_check}
mkdir -p "$OUT"
python -c "import torch, importlib.util as u; print('cuda', torch.cuda.is_available(), 'tensorrt', u.find_spec('tensorrt') is not None)" | tee "$OUT/env.txt"
python -m pytest -q -m gpu tests/export/test_formats.py tests/export/test_onnx.py 2>&1 | tee "$OUT/pytest.txt"
python - <<'PY' 2>&1 | tee "$OUT/benchmark.txt"
import os, sys
sys.path.insert(0, ".")
from pathlib import Path
from nas import NAS
from nas.data.synthetic import CLASSES
from nas.export.benchmark import benchmark, format_table
from tests.zoo_helpers import make_checkpoint
out = Path(os.environ.get("OUT", "runs/gpu_check"))
ckpt = make_checkpoint(out / "tiny.pt", 8, list(CLASSES))
m = NAS(ckpt).to("cuda")
print(format_table(benchmark(m.model, m.names, out / "bench", formats="torch,onnx,engine,engine_fp16", imgsz=64, rounds=20, calib=4)))
PY
