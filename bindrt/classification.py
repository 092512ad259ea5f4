"""Zero- and few-shot classification of files of any modality, against labels given as words.

Zero-shot: each label's prototype is the mean of the unit text embeddings of every template
filled with it (a prompt ensemble, as CLIP does), renormalised. Few-shot: with examples (one
folder per label), each label also gets the mean of its examples' unit embeddings, and the
prototype is ``text_weight * text + (1 - text_weight) * examples``, renormalised. An item's
class is the prototype with the highest cosine; probabilities are a softmax over the cosines
times the temperature the text encoder was trained with (its logit scale) when known.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bindrt.errors import ConfigError, InputError, UnknownModalityError
from bindrt.layouts import INPUT_KINDS

DEFAULT_TEMPLATES = ("a photo of a {}.", "a {}.", "the sound of a {}.", "a picture of the {}.", "an image of a {}.")
#: Softmax temperature over cosines (CLIP's trained logit scale, 100).
LOGIT_SCALE = 100.0


@dataclass
class Classification:
    labels: list[str]
    files: list[str]
    kinds: list[str]
    scores: np.ndarray  # (files, labels) cosines
    probabilities: np.ndarray
    few_shot: bool

    @property
    def predictions(self) -> list[str]:
        return [self.labels[i] for i in self.scores.argmax(1)]

    def to_dict(self) -> dict[str, Any]:
        return {
            "labels": self.labels,
            "few_shot": self.few_shot,
            "items": [
                {
                    "file": f,
                    "kind": k,
                    "label": self.labels[int(s.argmax())],
                    "probability": float(p.max()),
                    "scores": {lab: float(v) for lab, v in zip(self.labels, s)},
                }
                for f, k, s, p in zip(self.files, self.kinds, self.scores, self.probabilities)
            ],
        }


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def text_prototypes(model: Any, labels: list[str], templates: tuple[str, ...] | list[str]) -> np.ndarray:
    """(labels, dim) unit prompt-ensemble prototypes."""
    if "text" not in model.modalities:
        raise UnknownModalityError("zero-shot labels need the text encoder, and the bundle has none")
    for t in templates:
        if "{}" not in t:
            raise ConfigError(f"template {t!r} has no '{{}}' for the label; expected e.g. 'a photo of a {{}}.'")
    prompts = [t.format(label) for label in labels for t in templates]
    emb = model.embed(normalize=True, text=prompts)["text"].reshape(len(labels), len(templates), -1)
    return _unit(emb.mean(1))


def embed_files(model: Any, files: list[Path], modality: str | None = None) -> tuple[np.ndarray, list[str]]:
    """Unit embeddings of ``files`` (each routed to its modality) and their kinds, in order."""
    from bindrt.index.routing import route

    kinds = []
    for f in files:
        kind = route(f, modality)
        if kind is None:
            raise InputError(f"{f}: no modality for this file type; pass --modality to force one")
        if kind == "text":
            raise InputError(f"{f}: a text file; classify embeds media files (put captions in --labels/--templates)")
        if INPUT_KINDS[kind] not in model.modalities:
            raise UnknownModalityError(f"{f} is a {kind} file, and the bundle has no {INPUT_KINDS[kind]} encoder")
        kinds.append(kind)
    out = np.zeros((len(files), model.config.out_embed_dim), np.float32)
    for kind in dict.fromkeys(kinds):
        idx = [i for i, k in enumerate(kinds) if k == kind]
        out[idx] = model.embed(normalize=True, **{kind: [str(files[i]) for i in idx]})[kind]
    return out, kinds


def example_prototypes(
    model: Any, examples: "str | os.PathLike[str]", labels: list[str], modality: str | None
) -> np.ndarray:
    """(labels, dim) unit means of the example files in ``examples/<label>/``."""
    root = Path(examples)
    if not root.is_dir():
        raise ConfigError(f"--examples {root} is not a directory; expected one subfolder of example files per label")
    missing = [lab for lab in labels if not (root / lab).is_dir()]
    if missing:
        have = sorted(p.name for p in root.iterdir() if p.is_dir())
        raise ConfigError(f"--examples {root} has no folder for label(s) {missing} (it has: {have})")
    protos = []
    for lab in labels:
        files = sorted(p for p in (root / lab).iterdir() if p.is_file() and not p.name.startswith("."))
        if not files:
            raise ConfigError(f"--examples {root / lab} holds no files; expected example files of {lab!r}")
        emb, _ = embed_files(model, files, modality)
        protos.append(_unit(emb.mean(0)))
    return np.stack(protos)


def blend(text: np.ndarray, examples: np.ndarray | None, text_weight: float = 0.5) -> np.ndarray:
    """Few-shot prototypes: ``text_weight * text + (1 - text_weight) * examples``, renormalised (text alone if None)."""
    return text if examples is None else _unit(text_weight * text + (1 - text_weight) * examples)


def class_means(embeddings: np.ndarray, labels: np.ndarray, classes: int) -> np.ndarray:
    """(classes, dim) unit means of unit ``embeddings`` per integer label: example prototypes from arrays."""
    return _unit(np.stack([_unit(embeddings[labels == c]).mean(0) for c in range(classes)]))


def classify(
    model: Any,
    files: "list[str | os.PathLike[str]]",
    labels: list[str],
    *,
    templates: "tuple[str, ...] | list[str]" = DEFAULT_TEMPLATES,
    examples: "str | os.PathLike[str] | None" = None,
    text_weight: float = 0.5,
    modality: str | None = None,
) -> Classification:
    """Classify ``files`` into ``labels`` with a loaded model (``bindrt.load(...)``) or a bundle path."""
    import bindrt

    if isinstance(model, (str, os.PathLike)):
        model = bindrt.load(model)
    labels = [str(lab).strip() for lab in labels]
    if len(labels) < 2 or any(not lab for lab in labels) or len(set(labels)) != len(labels):
        raise ConfigError(f"labels {labels}: expected at least two distinct, non-empty labels")
    if not files:
        raise ConfigError("no files to classify")
    if not 0.0 <= text_weight <= 1.0:
        raise ConfigError(f"text_weight={text_weight}; expected a number in [0, 1]")
    paths = [Path(f) for f in files]
    for p in paths:
        if not p.is_file():
            raise InputError(f"{p} is not a file; expected media files to classify")
    protos = text_prototypes(model, labels, list(templates))
    if examples is not None:
        protos = blend(protos, example_prototypes(model, examples, labels, modality), text_weight)
    emb, kinds = embed_files(model, paths, modality)
    scores = emb @ protos.T
    logits = LOGIT_SCALE * scores
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    return Classification(labels, [str(p) for p in paths], kinds, scores, probs, examples is not None)
