"""ONNX export of bindrt bundles (``bindrt export`` / ``bindrt validate``).

``export_bundle(bundle, precisions=("fp32", "fp16", "int8"), ...)`` writes
checked and validated ONNX graphs into a bundle and records them in its
manifest; ``validate_bundle(bundle)`` re-runs the validation. Exporting needs
torch; reading the records (:mod:`bindrt.export.spec`) does not, which is what
the ONNX Runtime backend uses. Importing this package imports neither.
"""

from __future__ import annotations

from typing import Any

__all__ = ["export_bundle", "validate_bundle"]


def export_bundle(*args: Any, **kwargs: Any):  # noqa: D103 - documented in pipeline
    from bindrt.export.pipeline import export_bundle as _export

    return _export(*args, **kwargs)


def validate_bundle(*args: Any, **kwargs: Any):  # noqa: D103
    from bindrt.export.pipeline import validate_bundle as _validate

    return _validate(*args, **kwargs)


export_bundle.__doc__ = "Export, check and validate ONNX graphs of a bundle (see bindrt.export.pipeline.export_bundle)."
validate_bundle.__doc__ = "Re-validate a bundle's ONNX graphs (see bindrt.export.pipeline.validate_bundle)."
