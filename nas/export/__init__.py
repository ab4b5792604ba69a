"""Deployment exports (ONNX with optional in-graph NMS, OpenVINO, TorchScript, TensorRT), each checked against torch
in its own runtime and loadable with `NAS(path)`.

`nas.export.formats.export` (every format; `EXPORTERS`, `default_file`), `nas.export.onnx` (`export_onnx`,
`onnx_predict`), `openvino`, `torchscript`, `tensorrt`, `check` (the one output check), `benchmark` (`nas benchmark`),
and `nas.export.options` (torch-free, read by `nas help`: `ExportOptions`, `ExportTarget`, `BenchmarkOptions`).
Nothing is imported here, so that `nas help` can read the options without loading torch.
"""
