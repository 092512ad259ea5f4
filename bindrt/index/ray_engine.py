"""``bindrt index --engine ray``: the embedding step as a Ray Data pipeline, for when one machine is not enough.

The plan (what to embed, what to keep, what to drop) and the commit are the single-process
path's (:mod:`.build`); only the embedding runs on the cluster: items are read and
preprocessed by CPU tasks, then embedded by an actor pool of bindrt backends (one actor per
GPU with ``num_gpus``, else one per CPU slot). Results stream back to the driver in shards
(Ray Data's batches), which are staged in the index database as they arrive, so a run
interrupted anywhere resumes like a local one, and the final index has the same format.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from bindrt.errors import ConfigError
from bindrt.index.build import EmbedItems, EmbedSettings, IndexReport, build_index, preprocess_item
from bindrt.index.store import Item
from bindrt.layouts import INPUT_KINDS

#: Thread-count option of each backend inside an actor (one core per actor unless it has a GPU).
_THREADS = {"onnxruntime": "intra_op_num_threads", "openvino": "inference_num_threads"}


def import_ray() -> Any:
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise ConfigError("--engine ray needs Ray Data: `pip install 'bindrt[ray]'`") from None
    return ray


def build_index_ray(
    bundle: "str | os.PathLike[str]",
    inputs: Iterable["str | os.PathLike[str]"],
    out: "str | os.PathLike[str]",
    *,
    address: str | None = None,
    actors: int | None = None,
    num_cpus: int | None = None,
    **options: Any,
) -> IndexReport:
    """:func:`bindrt.index.build.build_index` with the embedding on Ray (a local instance unless ``address``)."""
    ray = import_ray()
    started = not ray.is_initialized()
    if started:
        ray.init(address=address, num_cpus=num_cpus if address is None else None, include_dashboard=False,
                 log_to_driver=False, ignore_reinit_error=True)  # fmt: skip
    try:
        embed = _ray_embedder(ray, actors)
        return build_index(bundle, inputs, out, embed_items=embed, **options)
    finally:
        if started:
            ray.shutdown()


class _Encoder:
    """A Ray actor holding one loaded bindrt backend; called on batches of preprocessed rows."""

    def __init__(self, bundle: str, kind: str, settings: EmbedSettings, gpus: float) -> None:
        override: dict[str, Any] = {}
        if not gpus:  # one CPU slot per actor: one thread each, or the actors fight over the cores
            if settings.backend in ("torch", "triton"):
                import torch

                torch.set_num_threads(1)
            elif settings.backend in _THREADS:
                override[_THREADS[settings.backend]] = settings.options.get(_THREADS[settings.backend], 1)
        self.kind = kind
        self.model = settings.load(bundle, [INPUT_KINDS[kind]], **override)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Embeds the rows that preprocessed; the others pass through with their error and a zero row."""
        good = [i for i, e in enumerate(batch["error"]) if not e]
        out = np.zeros((len(batch["key"]), self.model.config.out_embed_dim), np.float32)
        if good:
            out[good] = self.model.encode(self.kind, np.stack([batch["array"][i] for i in good]), normalize=True)
        return {"key": batch["key"], "error": batch["error"], "embedding": out}


def _ray_embedder(ray: Any, actors: int | None) -> EmbedItems:
    def embed(
        bundle: Path,
        todo: dict[str, list[Item]],
        report: IndexReport,
        emit: Callable[[str, Any], None],
        settings: EmbedSettings,
    ) -> Iterable[tuple[Item, np.ndarray]]:
        from bindrt.preprocess import preprocess

        gpus = 1.0 if settings.device.startswith("cuda") else 0.0
        slots = int(ray.cluster_resources().get("GPU" if gpus else "CPU", 1))
        pool = max(1, actors or settings.workers or slots)
        batch = settings.batch
        for kind, items in todo.items():
            rows = [
                {"key": i, "kind": kind, "value": it.text if kind == "text" else it.path} for i, it in enumerate(items)
            ]

            def prep(row: dict[str, Any]) -> dict[str, Any]:
                got = preprocess_item(preprocess, Item(row["value"], None, row["kind"], "", row["value"]))
                bad = isinstance(got, str)
                return {
                    "key": row["key"],
                    "error": got if bad else "",
                    "array": np.zeros(1, np.float32) if bad else got,
                }

            prepared = ray.data.from_items(rows, override_num_blocks=max(1, min(len(rows), 4 * pool))).map(prep)
            embedded = prepared.map_batches(
                _Encoder,
                fn_constructor_args=(str(bundle), kind, settings, gpus),
                batch_size=batch,
                concurrency=pool,
                num_gpus=gpus or None,
                num_cpus=None if gpus else 1,
                batch_format="numpy",
            )
            for shard in embedded.iter_batches(batch_size=batch, batch_format="numpy"):
                for key, error, vector in zip(shard["key"], shard["error"], shard["embedding"]):
                    item = items[int(key)]
                    if error:
                        report.fail(item.path, str(error))
                    else:
                        yield item, np.asarray(vector, np.float32)
                emit("advance", len(shard["key"]))

    return embed
