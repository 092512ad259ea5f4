"""``bindrt triton-repo``: configs Triton parses, graphs they match, and a stock tritonserver serving the python ensemble.

Two small golden bundles (text/audio/imu and vision/depth/thermal, fp32, exported once per module)
cover every modality; the server test serves both repositories from one ``tritonserver`` process,
the binary nvidia-pytriton ships, started directly (not through PyTriton's Python API).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from helpers import GOLDEN_DIR, MEDIA_DIR, png_bytes, wav_bytes

pytest.importorskip("onnx", reason="needs the onnx extras (pip install 'bindrt[onnx]')")
pytest.importorskip("onnxruntime", reason="needs the onnx extras (pip install 'bindrt[onnx]')")
model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2", reason="needs tritonclient[all]")

from google.protobuf import text_format  # noqa: E402  (after the skips: protobuf comes with tritonclient)

from bindrt.bundle import Bundle  # noqa: E402
from bindrt.cli import main  # noqa: E402
from bindrt.serving import protocol  # noqa: E402
from bindrt.serving.repository import MARKER, write_repository  # noqa: E402

MODS_A = ["text", "audio", "imu"]
MODS_B = ["vision", "depth", "thermal"]
ONNX_TO_TRITON = {1: "TYPE_FP32", 7: "TYPE_INT64", 10: "TYPE_FP16", 2: "TYPE_UINT8", 6: "TYPE_INT32"}


def _export(tmp_path_factory, name: str, modalities: list[str]) -> Path:
    from bindrt.convert import convert_checkpoint
    from bindrt.export import export_bundle

    out = tmp_path_factory.mktemp(name) / "bundle"
    convert_checkpoint(GOLDEN_DIR / "weights.pth", GOLDEN_DIR / "config.json", out, modalities=modalities)
    export_bundle(out, modalities=modalities, precisions=("fp32",), validate=False)
    return out


@pytest.fixture(scope="module")
def bundle_a(tmp_path_factory) -> Path:
    return _export(tmp_path_factory, "triton_a", MODS_A)


@pytest.fixture(scope="module")
def bundle_b(tmp_path_factory) -> Path:
    return _export(tmp_path_factory, "triton_b", MODS_B)


def _configs(repo: Path) -> dict[str, object]:
    out = {}
    for path in sorted(repo.glob("*/config.pbtxt")):
        config = text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())
        assert config.name == path.parent.name
        out[config.name] = config
    return out


def _dims_of(value_info) -> tuple[str, list[int]]:
    t = value_info.type.tensor_type
    dims = [d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim]
    return ONNX_TO_TRITON[t.elem_type], dims[1:]


def _check_against_onnx(config, onnx_path: Path) -> None:
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    for declared, graph_io in ((config.input, graph.input), (config.output, graph.output)):
        assert [t.name for t in declared] == [v.name for v in graph_io]
        for t, v in zip(declared, graph_io):
            dtype, dims = _dims_of(v)
            assert model_config_pb2.DataType.Name(t.data_type) == dtype and list(t.dims) == dims, (config.name, t)


def _leftovers(parent: Path) -> list[str]:
    return [p.name for p in parent.iterdir() if p.name.startswith(".")]


# ----------------------------------------------------------------------------- configs
@pytest.mark.parametrize("platform", ["onnxruntime", "python"])
@pytest.mark.parametrize("ensemble", [False, True])
def test_configs_parse_and_match_the_graphs(bundle_a, tmp_path, platform, ensemble):
    repo = tmp_path / "repo"
    record = write_repository(
        bundle_a, repo, platform=platform, ensemble=ensemble, max_batch=16, preferred_batch=(2, 8), record=False
    )
    configs = _configs(repo)
    assert sorted(configs) == sorted(record["models"])
    bundle = Bundle.open(bundle_a)
    for kind in MODS_A:
        enc = configs[kind + protocol.ENCODER_SUFFIX]
        graph = bundle.manifest["modalities"][kind]["artifacts"]["onnx"]["graphs"][f"{kind}.fp32"]
        _check_against_onnx(enc, bundle_a / graph["file"])
        assert enc.max_batch_size == 16 and list(enc.dynamic_batching.preferred_batch_size) == [2, 8]
        assert enc.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_CPU
        if platform == "onnxruntime":
            assert enc.platform == "onnxruntime_onnx"
            _check_against_onnx(enc, repo / enc.name / "1" / "model.onnx")
        else:
            assert enc.backend == "python" and (repo / enc.name / "1" / "bundle" / graph["file"]).is_file()
        if ensemble or platform == "python":
            raw = configs[kind]
            assert [(t.name, t.optional) for t in raw.input] == [
                (t.name, t.optional) for t in protocol.RAW_INPUTS[kind]
            ]
            assert [t.name for t in raw.output] == [protocol.OUTPUT_NAME] and list(raw.output[0].dims) == [32]
        if ensemble:
            steps = configs[kind].ensemble_scheduling.step
            assert configs[kind].platform == "ensemble"
            assert [s.model_name for s in steps] == [f"{kind}_preprocess", enc.name]
            prep = configs[f"{kind}_preprocess"]
            assert [(t.name, t.data_type, list(t.dims)) for t in prep.output] == [
                (t.name, t.data_type, list(t.dims)) for t in enc.input
            ]
        elif platform == "onnxruntime":
            assert kind not in configs


def test_onnxruntime_encoders_return_unit_rows(bundle_a, tmp_path):
    import onnxruntime as ort

    import bindrt
    from bindrt.layouts import random_batch

    repo = tmp_path / "repo"
    write_repository(bundle_a, repo, platform="onnxruntime", modalities=["imu", "text"], record=False)
    embedder = bindrt.load(bundle_a, backend="onnxruntime", modalities=["imu", "text"])
    rng = np.random.default_rng()
    for kind in ("imu", "text"):
        batch = random_batch(kind, 3, rng)
        session = ort.InferenceSession(str(repo / f"{kind}_encoder/1/model.onnx"), providers=["CPUExecutionProvider"])
        (got,) = session.run(["embedding"], {kind: batch})
        np.testing.assert_allclose(np.linalg.norm(got, axis=-1), 1.0, rtol=1e-5)
        np.testing.assert_allclose(got, embedder.encode(kind, batch, normalize=True), atol=1e-5)


def test_tensorrt_configs_from_engine_records(bundle_a, tmp_path, capsys, monkeypatch):
    """Engine *records* with placeholder files (as tests/test_tensorrt_engines.py does): configs, never an engine run."""
    from bindrt.tensorrt.adapter import TrtVersion
    from bindrt.tensorrt.build import plan_engines
    from bindrt.tensorrt.engines import make_record, record_engine

    work = tmp_path / "b"
    shutil.copytree(bundle_a, work)
    assert main(["triton-repo", str(work), "--out", str(tmp_path / "none"), "--platform", "tensorrt"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no fp32 TensorRT engine" in err and "bindrt build" in err
    assert not (tmp_path / "none").exists() and not _leftovers(tmp_path)

    bundle = Bundle.open(work)
    for plan in plan_engines(bundle, precision="fp32", version=TrtVersion.parse("10.8")):
        bundle.add_file(plan.engine_relpath, lambda tmp: tmp.write_bytes(b"placeholder, not an engine"))
        sha = bundle.manifest["files"][plan.graph.file]["sha256"]
        record_engine(
            bundle,
            make_record(
                plan,
                graph_sha256=sha,
                gpu="H200",
                compute_capability=(9, 0),
                cache_key="0" * 64,
                seconds=1.0,
                layers=None,
                log=None,
            ),
        )
    bundle.save()
    repo = tmp_path / "trt"
    record = write_repository(work, repo, platform="tensorrt", ensemble=True)
    configs = _configs(repo)
    for kind in MODS_A:
        enc = configs[f"{kind}_encoder"]
        graph = bundle.manifest["modalities"][kind]["artifacts"]["onnx"]["graphs"][f"{kind}.fp32"]
        assert enc.platform == "tensorrt_plan" and (repo / enc.name / "1/model.plan").read_bytes().startswith(b"place")
        assert enc.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_GPU
        _check_against_onnx(enc, work / graph["file"])
        steps = [s.model_name for s in configs[kind].ensemble_scheduling.step]
        assert steps == [f"{kind}_preprocess", enc.name, f"{kind}_normalize"]
    # the ensemble's last step normalises what the engine returns
    scaled = np.random.default_rng().standard_normal((3, 32), dtype=np.float32) * 14
    (unit,) = _model(repo, "imu_normalize", monkeypatch).execute([{"embedding": _FakePbUtils.Tensor("e", scaled)}])
    np.testing.assert_allclose(unit.output_tensors[0].array, scaled / np.linalg.norm(scaled, axis=-1, keepdims=True))
    # recorded in the manifest, through the schema's record type
    saved = Bundle.open(work).record.modalities["imu"].artifacts["triton"]
    assert saved.repositories[str(repo)].models == tuple(record["models"])


# ----------------------------------------------------------------------------- bad input to the command
def test_command_refusals_are_one_line_and_leave_nothing(bundle_a, tmp_path, capsys):
    from bindrt.convert import convert_checkpoint

    bare = tmp_path / "bare"
    convert_checkpoint(GOLDEN_DIR / "weights.pth", GOLDEN_DIR / "config.json", bare, modalities=["imu"])
    cases = [
        (["triton-repo", str(bare), "--out", str(tmp_path / "r1")], "bindrt export"),
        (["triton-repo", str(bundle_a), "--out", "/sys/bindrt-triton-test/r"], "/sys"),
        (["triton-repo", str(bundle_a), "--out", str(tmp_path / "r1"), "--preferred-batch", "64"], "preferred"),
        (
            ["triton-repo", str(bundle_a), "--out", str(tmp_path / "r1"), "--platform", "python", "--device", "gpu"],
            "cpu",
        ),
    ]
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("mine")
    cases += [
        (["triton-repo", str(bundle_a), "--out", str(full), "--modalities", "imu"], "--force"),
        (["triton-repo", str(bundle_a), "--out", str(full), "--modalities", "imu", "--force"], "refusing"),
    ]
    for argv, needle in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith("bindrt triton-repo: error:") and needle in err, err
    assert not (tmp_path / "r1").exists() and (full / "keep.txt").read_text() == "mine"
    assert not _leftovers(tmp_path)
    # an empty directory is fine; a repository this command wrote is replaced with --force only
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["triton-repo", str(bundle_a), "--out", str(empty), "--modalities", "imu"]) == 0
    assert json.loads((empty / MARKER).read_text())["models"] == ["imu_encoder"]
    assert main(["triton-repo", str(bundle_a), "--out", str(empty), "--modalities", "text"]) == 2
    assert main(["triton-repo", str(bundle_a), "--out", str(empty), "--modalities", "text", "--force"]) == 0
    assert sorted(p.name for p in empty.iterdir() if p.is_dir()) == ["text_encoder"]
    assert not _leftovers(tmp_path)


# ----------------------------------------------------------------------------- a stock tritonserver
def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _start_tritonserver(repos: list[Path], work: Path):
    """The wheel's tritonserver with the Python backend laid out as ../shared/reference/TRITON.md says."""
    pytriton = pytest.importorskip("pytriton", reason="needs nvidia-pytriton (it ships tritonserver)")
    root = Path(pytriton.__file__).parent / "tritonserver"
    stub = root / "python_backend_stubs" / f"{sys.version_info.major}.{sys.version_info.minor}"
    if not (root / "bin/tritonserver").is_file() or not stub.is_dir():
        pytest.skip(f"nvidia-pytriton ships no tritonserver / Python {sys.version_info[:2]} stub here")
    backends = work / "backends" / "python"
    backends.mkdir(parents=True)
    for name in ("libtriton_python.so", "triton_python_backend_utils.py"):
        shutil.copy(root / "backends/python" / name, backends / name)
    shutil.copy(stub / "triton_python_backend_stub", backends / "triton_python_backend_stub")
    libs = [sysconfig.get_config_var("LIBDIR"), str(Path(pytriton.__file__).parent.parent / "nvidia_pytriton.libs")]
    env = dict(
        os.environ,
        LD_LIBRARY_PATH=os.pathsep.join([*libs, os.environ.get("LD_LIBRARY_PATH", "")]),
        PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        OMP_NUM_THREADS="1",
    )
    http, grpc, metrics = _free_ports(3)
    argv = [str(root / "bin/tritonserver"), "--backend-directory", str(backends.parent), "--exit-timeout-secs", "10"]
    argv += [a for r in repos for a in ("--model-repository", str(r))]
    for proto, port in (("http", http), ("grpc", grpc), ("metrics", metrics)):
        argv += [f"--{proto}-address", "127.0.0.1", f"--{proto}-port", str(port)]
    log = open(work / "tritonserver.log", "wb")
    proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{http}/v2/health/ready", timeout=2) as r:
                if r.status == 200:
                    return proc, http
        except OSError:
            pass
        time.sleep(0.25)
    _stop(proc)
    pytest.fail("tritonserver did not become ready:\n" + (work / "tritonserver.log").read_text()[-4000:])


def _group(pgid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-g", str(pgid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def _stop(proc) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=40)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + 10
    while _group(proc.pid) and time.monotonic() < deadline:  # the backend stubs exit after the server
        time.sleep(0.2)
    left = _group(proc.pid)
    if left:
        os.killpg(proc.pid, signal.SIGKILL)
    assert not left, f"processes left behind: {left}"


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


def test_stock_tritonserver_serves_the_python_ensemble(bundle_a, bundle_b, tmp_path):
    http_client = pytest.importorskip("tritonclient.http", reason="needs tritonclient[http]")
    import bindrt
    from bindrt.errors import InputError

    repos = [tmp_path / "repo_a", tmp_path / "repo_b"]
    for bundle, repo in zip((bundle_a, bundle_b), repos):
        write_repository(
            bundle, repo, platform="python", ensemble=True, max_batch=8, preferred_batch=(4,), record=False
        )
    rng = np.random.default_rng()
    t = np.arange(int(1.5 * 16000)) / 16000
    tone = (0.5 * np.sin(2 * np.pi * rng.uniform(200, 2000) * t) + 0.05 * rng.standard_normal(t.size)).astype(
        np.float32
    )
    stereo = (0.3 * rng.standard_normal((2, 22050 * 2))).astype(np.float32)
    inputs = {
        "text": [f"a photo of {int(rng.integers(1000))} dogs", "Ünïcode café ☕"],
        "vision": [
            (MEDIA_DIR / "photo.jpg").read_bytes(),
            png_bytes(rng.integers(0, 256, (90, 130, 3), dtype=np.uint8)),
        ],
        "depth": [png_bytes(rng.integers(300, 5000, (64, 80), dtype=np.uint16))],
        "thermal": [png_bytes(rng.integers(0, 256, (70, 50), dtype=np.uint8))],
        "audio": [wav_bytes(tone, 16000)],
        "imu": list(rng.standard_normal((2, 6, 1500), dtype=np.float32) * 3),
    }
    expected = {}
    for bundle, mods in ((bundle_a, MODS_A), (bundle_b, MODS_B)):
        with bindrt.load(bundle, backend="onnxruntime", modalities=mods) as embedder:
            expected |= embedder.embed(normalize=True, **{k: v for k, v in inputs.items() if k in mods})
            if "audio" in mods:
                expected["waveform"] = embedder.embed(audio=[(stereo, 22050)], normalize=True)["audio"]

    proc, port = _start_tritonserver(repos, tmp_path)
    client = http_client.InferenceServerClient(f"127.0.0.1:{port}")
    try:

        def infer(model: str, **arrays: np.ndarray) -> np.ndarray:
            tensors = []
            for name, array in arrays.items():
                dtype = "BYTES" if array.dtype == object else protocol.NUMPY_TO_TRITON[str(array.dtype)]
                tensor = http_client.InferInput(name, list(array.shape), dtype)
                tensor.set_data_from_numpy(array)
                tensors.append(tensor)
            return client.infer(model, tensors).as_numpy(protocol.OUTPUT_NAME)

        def as_bytes(items):
            return np.array([[s.encode() if isinstance(s, str) else s] for s in items], dtype=object)

        got = {kind: infer(kind, **{kind: as_bytes(inputs[kind])}) for kind in ("text", "vision", "depth", "thermal")}
        got["audio"] = infer("audio", audio=as_bytes(inputs["audio"]))
        got["waveform"] = infer("audio", waveform=stereo[None], sample_rate=np.array([[22050]], np.int32))
        got["imu"] = infer("imu", imu=np.stack(inputs["imu"]))
        for kind, array in got.items():
            assert array.shape == expected[kind].shape, kind
            assert _cosines(array, expected[kind]).min() >= 0.9999, kind
            np.testing.assert_allclose(np.linalg.norm(array, axis=-1), 1.0, rtol=1e-4)
        # the encoder models take the preprocessed tensors
        from bindrt.preprocess import preprocess

        pre = preprocess("imu", inputs["imu"])
        assert _cosines(infer("imu_encoder", imu=pre), expected["imu"]).min() >= 0.9999

        with pytest.raises(Exception) as info:
            infer("vision", vision=as_bytes([b"\x89PNG\r\n\x1a\n not really a png"]))
        error = protocol.error_from_message(str(info.value))
        assert isinstance(error, InputError) and "MediaDecodeError" in str(info.value), info.value
        with pytest.raises(Exception, match="InputError"):
            infer("audio", sample_rate=np.array([[16000]], np.int32))
        assert client.is_server_ready()
        assert _cosines(infer("imu", imu=np.stack(inputs["imu"])), expected["imu"]).min() >= 0.9999
    finally:
        client.close()  # an open keep-alive connection holds a stopping server for its exit timeout
        _stop(proc)


# ----------------------------------------------------------------------------- model.py in process
class _FakePbUtils:
    """The parts of triton_python_backend_utils that model.py uses."""

    class Tensor:
        def __init__(self, name, array):
            self.name, self.array = name, array

        def as_numpy(self):
            return self.array

    class TritonError:
        def __init__(self, message):
            self.message = message

    class InferenceResponse:
        def __init__(self, output_tensors, error=None):
            self.output_tensors, self.error = output_tensors, error

    @staticmethod
    def get_input_tensor_by_name(request, name):
        return request.get(name)


def _model(repo: Path, name: str, monkeypatch):
    from bindrt.serving.triton_model import TritonPythonModel

    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", _FakePbUtils)
    config = text_format.Parse((repo / name / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    from google.protobuf.json_format import MessageToDict

    as_json = MessageToDict(config, preserving_proto_field_name=True)
    model = TritonPythonModel()
    model.initialize({"model_config": json.dumps(as_json), "model_repository": str(repo / name), "model_version": "1"})
    return model


def test_model_py_answers_each_request_on_its_own(bundle_a, tmp_path, monkeypatch):
    """A bad request in a dynamic batch gets its own error; its batch-mates are embedded as if alone."""
    import bindrt

    repo = tmp_path / "repo"
    write_repository(bundle_a, repo, platform="python", modalities=["imu", "text"], max_request_items=4, record=False)
    rng = np.random.default_rng()
    good = rng.standard_normal((2, 6, 800), dtype=np.float32)
    imu = _model(repo, "imu", monkeypatch)
    requests = [
        {"imu": _FakePbUtils.Tensor("imu", good)},
        {"imu": _FakePbUtils.Tensor("imu", np.full((1, 6, 800), np.nan, np.float32))},
        {"imu": _FakePbUtils.Tensor("imu", rng.standard_normal((5, 6, 800), dtype=np.float32))},
        {"imu": _FakePbUtils.Tensor("imu", good[:1])},
    ]
    first, nan, too_many, last = imu.execute(requests)
    with bindrt.load(bundle_a, backend="onnxruntime", modalities=["imu"]) as embedder:
        expected = embedder.embed(imu=list(good), normalize=True)["imu"]
    np.testing.assert_allclose(first.output_tensors[0].array, expected, atol=1e-5)
    np.testing.assert_allclose(last.output_tensors[0].array, expected[:1], atol=1e-5)
    assert nan.error.message.startswith("InputError: [imu item 0]") and "NaN" in nan.error.message
    assert too_many.error.message.startswith("LimitError:") and "4" in too_many.error.message
    text = _model(repo, "text", monkeypatch)
    (bad,) = text.execute([{"text": _FakePbUtils.Tensor("text", np.array([[b"\xc3("]], dtype=object))}])
    assert bad.error.message.startswith("InputError:") and "UTF-8" in bad.error.message
    imu.finalize()
    text.finalize()
