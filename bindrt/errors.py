"""The one exception hierarchy every bindrt stage raises.

Callers catch :class:`BindrtError` for anything bindrt rejects; the subclasses
say which stage rejected it. Each subclass also derives from the builtin that
describes the failure (``ValueError``, ``FileNotFoundError``...), so code that
already catches builtins keeps working.
"""

from __future__ import annotations


class BindrtError(Exception):
    """Base class of every error bindrt raises on purpose."""


class ConfigError(BindrtError, ValueError):
    """A model configuration, preset name or option value is invalid."""


class UnknownModalityError(BindrtError, KeyError):
    """A modality name that bindrt (or this bundle/backend) does not have."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class InputError(BindrtError, ValueError):
    """An input item is malformed: wrong shape, dtype, NaN/Inf, empty list...

    ``modality`` and ``item`` (index in the caller's list, when known) say which
    input was wrong, so a message in a batch of a thousand files is actionable.
    """

    def __init__(self, message: str, *, modality: str | None = None, item: int | str | None = None):
        prefix = ""
        if modality is not None:
            prefix += f"[{modality}"
            if item is not None:
                prefix += f" item {item}"
            prefix += "] "
        super().__init__(prefix + message)
        self.detail = message
        self.modality = modality
        self.item = item

    def shifted(self, offset: int) -> "InputError":
        """The same error with the item index counted from an earlier position (batched callers)."""
        if not isinstance(self.item, int) or not offset:
            return self
        return type(self)(self.detail, modality=self.modality, item=self.item + offset)


class MediaDecodeError(InputError):
    """A media file or buffer could not be decoded (unreadable, truncated, wrong format)."""


class LimitError(InputError):
    """An input would decode to more than a bound bindrt enforces *before* allocating.

    Tiny hostile files (a 1x200000 PNG, a WAV declaring 1 Hz) decode to gigabytes;
    the message names the limit, the value that exceeded it and how to raise it.
    """


class CheckpointError(BindrtError, ValueError):
    """A checkpoint is not a plain state dict or does not match the model's layout."""


class BundleError(BindrtError, ValueError):
    """A bundle is missing files, has a corrupted file, or an invalid manifest."""


class OutputError(BindrtError, OSError):
    """An output path exists, is not writable, or is not a directory."""


class ExportError(BindrtError, RuntimeError):
    """An ONNX export, build or validation failed."""


class BackendError(BindrtError, RuntimeError):
    """A backend cannot run here (missing library, no device) or failed to run."""


class SearchIndexError(BindrtError, ValueError):
    """An index directory is not a bindrt index, is damaged, is empty, or holds another embedding space."""


__all__ = [
    "BindrtError",
    "ConfigError",
    "UnknownModalityError",
    "InputError",
    "MediaDecodeError",
    "LimitError",
    "CheckpointError",
    "BundleError",
    "OutputError",
    "ExportError",
    "BackendError",
    "SearchIndexError",
]
