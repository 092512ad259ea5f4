"""What the embeddings are for: an index of a collection, searched across modalities.

``bindrt.Index.build(bundle, inputs, out)`` (``bindrt index``) embeds a folder of files of any
modality into an index directory; ``Index.open(out).search(text="a dog", k=5)`` (``bindrt
search``) answers from it, combining query terms by embedding arithmetic. Torch-free unless
a torch backend embeds.
"""

from bindrt.index.build import BadDataError, IndexReport, build_index
from bindrt.index.query import Hit, Index, Term, combine
from bindrt.index.routing import route

__all__ = ["BadDataError", "Hit", "Index", "IndexReport", "Term", "build_index", "combine", "route"]
