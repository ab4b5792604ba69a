"""Untrusted files: malicious pickles are refused before anything runs; corrupt files give a clear error."""

from __future__ import annotations

import io
import os
import pickle
import subprocess
import zipfile
from pathlib import Path

import pytest
import torch

from nas.errors import CheckpointError
from nas.models import build, load_checkpoint, save_checkpoint
from nas.models import unpickle as restricted
from nas.space import ArchConfig
from tests.models.test_yolo_nas import _tiny


class _Reduce:
    """Pickles as a call of `func(*args)`: what an attacker puts in a checkpoint."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


@pytest.fixture
def marker(tmp_path) -> Path:
    return tmp_path / "pwned"


def _payloads(marker: Path) -> dict[str, tuple[object, str]]:
    """name -> (object whose unpickling would create `marker`, the global the error must name)."""
    write = f"open({str(marker)!r}, 'w').write('x')"
    return {
        "os.system": (_Reduce(os.system, f"touch {marker}"), f"{os.system.__module__}.system"),
        "builtins.exec": (_Reduce(exec, write), "builtins.exec"),
        "builtins.eval": (_Reduce(eval, write), "builtins.eval"),
        "subprocess.Popen": (_Reduce(subprocess.Popen, ["touch", str(marker)]), "subprocess.Popen"),
        "builtins.getattr": (_Reduce(getattr, "text", "upper"), "builtins.getattr"),
    }


def _assert_no_chained_traceback(error: BaseException) -> None:
    """The user sees our message only, not a pickle/zip traceback underneath it."""
    assert error.__cause__ is None and (error.__suppress_context__ or error.__context__ is None)


def _tiny_sd():
    torch.manual_seed(0)
    return build(ArchConfig.from_dict(_tiny())).state_dict()


@pytest.mark.filterwarnings("ignore:Detected pickle protocol 5")  # from torch's weights_only reader, tried first
@pytest.mark.parametrize(
    "payload", ["os.system", "builtins.exec", "builtins.eval", "subprocess.Popen", "builtins.getattr"]
)
@pytest.mark.parametrize(
    "container",
    [
        "whole_file",
        "inside_sg_checkpoint",
        "inside_own_format_meta",
        "legacy_format",
        "plain_pickle_p0",
        "plain_pickle_p5",
    ],
)
def test_malicious_pickles_are_refused_and_nothing_runs(tmp_path, marker, payload, container):
    evil, global_name = _payloads(marker)[payload]
    path = tmp_path / "evil.pth"
    if container == "whole_file":
        torch.save(evil, path)
    elif container == "inside_sg_checkpoint":
        torch.save({"net": _tiny_sd(), "acc": evil, "epoch": 3}, path)
    elif container == "inside_own_format_meta":
        torch.save(
            {"arch": ArchConfig.from_dict(_tiny()).to_dict(), "state_dict": _tiny_sd(), "meta": {"x": evil}}, path
        )
    elif container == "legacy_format":
        torch.save({"net": evil}, path, _use_new_zipfile_serialization=False)
    else:
        path.write_bytes(pickle.dumps(evil, protocol=int(container[-1])))
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(path)
    assert not marker.exists(), "the payload ran"
    text = str(e.value)
    assert str(path) in text
    if container.startswith("plain_pickle"):  # not a torch file: refused while reading torch's header
        assert global_name in text or "not a readable PyTorch checkpoint" in text
    else:
        assert f"refused to unpickle global {global_name!r}" in text and "nothing from the file was executed" in text
    _assert_no_chained_traceback(e.value)


def test_a_pickled_model_of_an_unknown_class_is_refused(tmp_path):
    path = tmp_path / "whole_model.pt"
    torch.save(build(ArchConfig.from_dict(_tiny())), path)  # our own classes are not on the allow-list
    with pytest.raises(CheckpointError, match=r"refused to unpickle global 'nas\.models\.yolo_nas\.YoloNAS'"):
        load_checkpoint(path)


def _op_global(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def _op_str(s: str) -> bytes:
    data = s.encode()
    return b"X" + len(data).to_bytes(4, "little") + data


def _zip_with_pickle(template: Path, stream: bytes, out: Path) -> Path:
    """A copy of the torch zip `template` whose data.pkl is replaced by `stream`."""
    with zipfile.ZipFile(template) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as dst:
        for item in src.infolist():
            data = stream if item.filename.endswith("/data.pkl") else src.read(item.filename)
            dst.writestr(item, data)
    return out


def test_allowed_classes_are_inert_placeholders(tmp_path, marker):
    # An allowed super-gradients class "called" with attacker arguments and given attacker state: it only
    # stores them, and the state is then rejected as a malformed module.
    qarep = _op_global("super_gradients.modules.qarepvgg_block", "QARepVGGBlock")
    stream = (
        b"\x80\x02"
        + qarep
        + _op_str(f"touch {marker}")
        + b"\x85R"  # TUPLE1, REDUCE
        + b"}"
        + _op_str("_parameters")
        + b"}"
        + _op_str("w")
        + _op_str("not a tensor")
        + b"ssb."  # SETITEM x2, BUILD, STOP
    )
    template = tmp_path / "template.pt"
    torch.save({"a": torch.zeros(1)}, template)
    path = _zip_with_pickle(template, stream, tmp_path / "crafted.pt")
    with pytest.raises(CheckpointError, match=r"malformed pickled model: w: expected a tensor, got str"):
        load_checkpoint(path)
    assert not marker.exists()
    obj = restricted.loads(stream)
    assert isinstance(obj, restricted.Inert) and obj._args == ((f"touch {marker}",), {})
    assert obj._path == "super_gradients.modules.qarepvgg_block.QARepVGGBlock" and restricted.is_module(obj)


def test_allowed_functions_check_their_arguments():
    with pytest.raises(pickle.UnpicklingError, match="latin1"):
        restricted.loads(b"\x80\x02" + _op_global("_codecs", "encode") + _op_str("x") + _op_str("rot13") + b"\x86R.")
    with pytest.raises(pickle.UnpicklingError, match="instead of a storage"):
        # _rebuild_tensor_v2("x", 0, (), (), False, {}): MARK, args, TUPLE, REDUCE
        stream = (
            b"\x80\x02" + _op_global("torch._utils", "_rebuild_tensor_v2") + b"(" + _op_str("x") + b"K\x00))\x89}tR."
        )
        restricted.loads(stream)
    assert restricted.loads(pickle.dumps({1, 2}, protocol=2)) == {1, 2}  # `__builtin__.set` is translated


def test_refused_global_stops_before_the_call():
    stream = pickle.dumps(_Reduce(print, "should not print"), protocol=2)
    with pytest.raises(restricted.RefusedGlobal, match=r"builtins\.print"):
        restricted.loads(stream)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_torchscript_archives_are_not_run(tmp_path):
    path = tmp_path / "scripted.pt"
    torch.jit.save(torch.jit.script(torch.nn.ReLU()), path)
    with pytest.raises(CheckpointError, match="TorchScript archive"):
        load_checkpoint(path)


@pytest.fixture(scope="module")
def good_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("good")
    arch = ArchConfig.from_dict(_tiny())
    torch.manual_seed(0)
    model = build(arch)
    zip_path = save_checkpoint(root / "good_zip.pt", model, arch)
    legacy_path = root / "good_legacy.pth"
    torch.save({"net": model.state_dict()}, legacy_path, _use_new_zipfile_serialization=False)
    return {"zip": zip_path, "legacy": legacy_path}


@pytest.mark.parametrize("kind", ["zip", "legacy"])
@pytest.mark.parametrize("fraction", [0.02, 0.5, 0.98])
def test_truncated_files_are_rejected(tmp_path, good_files, kind, fraction):
    data = good_files[kind].read_bytes()
    path = tmp_path / f"truncated_{kind}.pt"
    path.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(path)
    assert str(path) in str(e.value) and "truncated or corrupt" in str(e.value)
    _assert_no_chained_traceback(e.value)


def test_flipped_bytes_in_a_zip_are_rejected(tmp_path, good_files):
    data = bytearray(good_files["zip"].read_bytes())
    start = data.find(b"data.pkl")
    data[start + 100 : start + 164] = bytes(64)  # overwrite the start of the pickle record
    path = tmp_path / "corrupt.pt"
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(path)


@pytest.mark.parametrize(
    "name, content",
    [
        ("empty.pt", b""),
        ("garbage.pt", os.urandom(4096)),
        ("text.pth", b'{"net": "not a checkpoint"}\n'),
        ("not_torch.zip", None),
    ],
)
def test_garbage_files_are_rejected(tmp_path, name, content):
    path = tmp_path / name
    if content is None:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            z.writestr("readme.txt", "hello")
        content = buf.getvalue()
    path.write_bytes(content)
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(path)
    assert str(path) in str(e.value)
    _assert_no_chained_traceback(e.value)


def test_forced_weights_only_mode_is_explained(tmp_path, monkeypatch):
    path = tmp_path / "model.pt"
    torch.save(build(ArchConfig.from_dict(_tiny())), path)
    monkeypatch.setenv("TORCH_FORCE_WEIGHTS_ONLY_LOAD", "1")
    with pytest.raises(CheckpointError, match="TORCH_FORCE_WEIGHTS_ONLY_LOAD is set: unset it"):
        load_checkpoint(path)
