"""The ``search`` model of ``bindrt serve --index INDEX``: nearest indexed items to query embeddings.

A client embeds its query with any of the server's models (``text``, ``vision``, ...), combines
terms if it wants to (the arithmetic of :func:`bindrt.index.combine`), and sends the vector:

    inputs   embedding  FP32  [n, dim]   one query per row (normalised here)
             k          INT32 [n, 1]     optional; default DEFAULT_K, at most MAX_K
    outputs  scores     FP32  [n, k]     cosines, best first (-inf where fewer than k items exist)
             rows       INT64 [n, k]     index rows (-1 where padded)
             items      BYTES [n, k]     JSON per hit: path, line, kind, text ("" where padded)

The index is opened read-only when the server starts and checked to hold the served bundle's
embedding space; it is not reloaded while serving (restart to serve a re-indexed collection).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from bindrt.errors import ConfigError, InputError, SearchIndexError

SEARCH_MODEL = "search"
DEFAULT_K, MAX_K = 10, 1000
OUTPUTS = (("scores", np.float32), ("rows", np.int64), ("items", bytes))


class SearchHandler:
    """PyTriton callable of the ``search`` model over one opened :class:`bindrt.index.Index`."""

    def __init__(self, index: Any) -> None:
        self.index = index
        self.dim = int(index.space["dim"])

    def __call__(self, requests: list[Any]) -> list[dict[str, np.ndarray]]:
        from bindrt.serving.protocol import error_message
        from bindrt.serving.server import RequestFailed

        out = []
        for request in requests:
            try:
                out.append(self.search({name: request[name] for name in request.keys()}))
            except Exception as exc:  # noqa: BLE001 -- the request's own error, as text the client maps back
                raise RequestFailed(error_message(exc)) from None
        return out

    def search(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if "embedding" not in arrays:
            raise InputError("the search request has no 'embedding' input; expected FP32 [n, dim] query vectors")
        queries = np.asarray(arrays["embedding"], np.float32)
        if queries.ndim != 2 or queries.shape[1] != self.dim or len(queries) == 0:
            raise InputError(f"'embedding' has shape {list(queries.shape)}; expected [n, {self.dim}] with n >= 1")
        if not np.isfinite(queries).all():
            raise InputError("'embedding' holds NaN or Inf; expected finite query vectors")
        k = int(np.asarray(arrays["k"]).reshape(-1)[0]) if "k" in arrays else DEFAULT_K
        if not 1 <= k <= MAX_K:
            raise ConfigError(f"k={k}; expected 1 <= k <= {MAX_K}")
        norms = np.linalg.norm(queries, axis=1)
        if (norms < 1e-12).any():
            raise InputError(f"query {int(np.argmin(norms))} is the zero vector; expected an embedding")
        if len(self.index) == 0:
            raise SearchIndexError("the served index is empty")
        scores = np.full((len(queries), k), -np.inf, np.float32)
        rows = np.full((len(queries), k), -1, np.int64)
        items = np.full((len(queries), k), b"", object)
        for i, q in enumerate(queries / norms[:, None]):
            for j, hit in enumerate(self.index.nearest(q, k)):
                scores[i, j], rows[i, j] = hit.score, hit.row
                items[i, j] = json.dumps(
                    {"path": hit.path, "line": hit.line, "kind": hit.kind, "text": hit.text}
                ).encode()
        return {"scores": scores, "rows": rows, "items": items}
