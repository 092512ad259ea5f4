"""Dependencies point one way: the runtime core imports nothing from the exporter, training, kernels or torch."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

#: Modules the torch-free core must never load, directly or through anything it imports.
FORBIDDEN = ("torch", "bindrt.export", "bindrt.training", "bindrt.kernels")

CORE = [
    "bindrt",
    "bindrt.bundle",
    "bindrt.config",
    "bindrt.layouts",
    "bindrt.roofline",
    "bindrt.loaders",
    "bindrt.errors",
    "bindrt.fileio",
    "bindrt.schema",
    "bindrt.tiers",
    "bindrt.runtime",
    "bindrt.runtime.base",
    "bindrt.runtime.embedder",
    "bindrt.runtime.graphs",
    "bindrt.runtime.onnxruntime_backend",
    "bindrt.runtime.openvino_backend",
    "bindrt.runtime.auto",
    "bindrt.cli",
    "bindrt.bench",
    "bindrt.bench.sweep",
    "bindrt.bench.report",
    "bindrt.bench.plots",
    "bindrt.index",
    "bindrt.index.ann",
    "bindrt.index.ray_engine",
    "bindrt.classification",
    "bindrt.serving.search",
    "bindrt.preprocess",
    "bindrt.preprocess.audio",
    "bindrt.preprocess.depth",
    "bindrt.preprocess.image",
    "bindrt.preprocess.imu",
    "bindrt.preprocess.limits",
    "bindrt.preprocess.text",
    "bindrt.preprocess.thermal",
    "bindrt.preprocess.video",
]

# A meta-path hook that records every module import attempt with the module that triggered it.
PROBE = """
import importlib, json, sys
forbidden = tuple(json.loads(sys.argv[2]))
seen = []

class Recorder:
    def find_spec(self, name, path=None, target=None):
        if name == forbidden[0] or any(name == f or name.startswith(f + ".") for f in forbidden):
            frame = sys._getframe(1)
            while frame and frame.f_globals.get("__name__", "").startswith("importlib"):
                frame = frame.f_back
            seen.append([name, frame.f_globals.get("__name__", "?") if frame else "?"])
        return None

sys.meta_path.insert(0, Recorder())
importlib.import_module(sys.argv[1])
print(json.dumps(seen))
"""


#: The torch side of bindrt/: it may load torch, but still nothing from the exporter, training or kernels.
TORCH_SIDE = [
    "bindrt.model",
    "bindrt.model.checkpoint",
    "bindrt.runtime.torch_backend",
    "bindrt.runtime.triton_backend",
]


def loaded_by(module: str, forbidden: tuple[str, ...]) -> list[list[str]]:
    out = subprocess.run([sys.executable, "-c", PROBE, module, json.dumps(forbidden)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("module", CORE)
def test_core_module_loads_nothing_from_export_training_kernels_or_torch(module):
    loaded = loaded_by(module, FORBIDDEN)
    assert loaded == [], f"importing {module} loads {loaded} ([module, imported from])"


@pytest.mark.parametrize("module", TORCH_SIDE)
def test_torch_side_loads_nothing_from_export_training_or_kernels(module):
    loaded = loaded_by(module, FORBIDDEN[1:])
    assert loaded == [], f"importing {module} loads {loaded} ([module, imported from])"
