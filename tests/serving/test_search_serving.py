"""``bindrt serve --index``: the ``search`` model answers what ``Index.search`` answers, on a real Triton server."""

from __future__ import annotations

import pytest
from helpers import write_collection

pytest.importorskip("pytriton", reason="bindrt serve runs PyTriton's Triton Inference Server (the serve extra)")


def test_served_search_matches_the_local_index(serving_bundle, tmp_path):
    from bindrt.errors import ConfigError, InputError
    from bindrt.index import Index, build_index
    from bindrt.serving.server import start_server

    media = tmp_path / "media"
    write_collection(media)
    build_index(serving_bundle, [media], tmp_path / "idx", backend="onnxruntime")
    with Index.open(tmp_path / "idx") as index:
        local = index.search(text="a red car", k=4)
    with start_server(serving_bundle, backend="onnxruntime", index=str(tmp_path / "idx")) as server:
        assert "search" in server.info["models"]
        with server.client() as client:
            hits = client.search(text="a red car", k=4)
            assert [h["path"] for h in hits] == [h.path for h in local]
            assert [h["row"] for h in hits] == [h.row for h in local]
            assert all(abs(a["score"] - b.score) < 1e-4 for a, b in zip(hits, local))
            with pytest.raises(ConfigError, match="k=0"):
                client.search(client.embed(text=["a dog"])["text"][0], k=0)
            with pytest.raises(InputError, match="zero vector"):
                client.search([0.0] * _dim(serving_bundle), k=3)


def _dim(bundle) -> int:
    from bindrt.bundle import Bundle

    return Bundle.open(bundle).config.out_embed_dim
