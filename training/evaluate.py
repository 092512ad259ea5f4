"""Evaluation: emergent zero-shot classification, cross-modal retrieval, embedding arithmetic.

All measured on a held-out world seed (scenes never seen in training):

* **Zero-shot** (``zero_shot_top1``): a modality's embedding is compared with the
  text embeddings of one prompt per class ("a sound of a {class}", "a depth map of
  a {class}", ...); top-1 accuracy over the held-out scenes. For audio, depth,
  thermal and IMU this is *emergent*: those encoders were trained against images
  only and never saw a caption. ``vision`` is the trained image-text reference.
* **Retrieval** (``retrieval``): ``X->image`` recall@1/5: each query must find its own
  paired image among a gallery of ``gallery`` held-out images (the eval set is cut
  into galleries of that size; chance recall@k = k / gallery).
* **Embedding arithmetic** (``arithmetic``): the query ``image(class A, colour X) +
  audio(class B)`` (each L2-normalised) searches the held-out images (minus the two
  sources' own images). A hit needs *both* attributes: class B (only the audio knows
  it) and colour X (only the image knows it; sound carries no colour). Baselines: the
  image alone (finds colour X but class A) and the audio alone (class B, colour at
  chance). Composition works when ``both`` clearly beats both baselines.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .data import StepBatches, WorldSource, iter_batches, step_loader
from .world import CLASSES, COLOUR_NAMES, PROMPTS


@torch.no_grad()
def encode(encoder: nn.Module, batch: Tensor, device: torch.device, chunk: int = 64) -> Tensor:
    """L2-normalised float32 embeddings on the CPU (the encoder's output scale removed)."""
    encoder.eval()
    outs = [encoder(batch[i : i + chunk].to(device)).float() for i in range(0, len(batch), chunk)]
    return F.normalize(torch.cat(outs), dim=-1).cpu()


@torch.no_grad()
def class_text_embeddings(
    text_encoder: nn.Module, template: str, device: torch.device, classes: Sequence[str] = CLASSES
) -> Tensor:
    from bindrt.preprocess.text import tokenize

    ids = torch.from_numpy(tokenize([template.format(c) for c in classes]))
    return encode(text_encoder, ids, device)


def zero_shot_top1(embeddings: Tensor, labels: Tensor, class_embeddings: Tensor) -> float:
    return (embeddings @ class_embeddings.T).argmax(dim=1).eq(labels).float().mean().item()


def recall_at(queries: Tensor, keys: Tensor, ks: Sequence[int] = (1, 5), gallery: int = 100) -> dict[str, float]:
    """Recall@k of query i finding key i, within consecutive galleries of ``gallery`` pairs."""
    hits = {k: 0 for k in ks}
    n = len(queries) - len(queries) % gallery if len(queries) >= gallery else len(queries)
    for start in range(0, n, gallery):
        q, k_ = queries[start : start + gallery], keys[start : start + gallery]
        rank = (q @ k_.T).argsort(dim=1, descending=True)
        target = torch.arange(len(q))[:, None]
        for k in ks:
            hits[k] += (rank[:, :k] == target).any(dim=1).sum().item()
    return {f"R@{k}": hits[k] / max(n, 1) for k in ks}


def arithmetic_probe(
    images: Tensor, audio: Tensor, labels: Tensor, colours: Tensor, *, queries: int = 300, seed: int = 0, k: int = 5
) -> dict[str, Any]:
    """image(class A, colour X) + audio(class B) -> images that have class B *and* colour X (see module doc).

    Scores over the gallery (all held-out images but the two sources' own):
    ``image+audio`` ranks by cosine with the normalised sum of the two embeddings, as in
    the paper; ``image+audio (z)`` sums each query's similarities after standardising
    them over the gallery (the same as weighting each embedding by 1/std of its
    similarities), so the image, whose similarities to same-class images are far larger
    than any audio-image similarity, cannot drown the audio; ``image`` and ``audio`` are
    the single-query baselines.
    """
    rng = np.random.default_rng(seed)
    n = len(images)
    names = ("image+audio", "image+audio (z)", "image", "audio")
    stats = {name: {"both@1": 0.0, f"both@{k}": 0.0, "class@1": 0.0, "colour@1": 0.0} for name in names}
    done = 0
    for _ in range(queries * 4):
        if done == queries:
            break
        i, j = (int(x) for x in rng.integers(n, size=2))
        if labels[i] == labels[j]:
            continue
        done += 1
        want_cls, want_col = labels[j], colours[i]
        s_img, s_aud = images @ images[i], images @ audio[j]
        z = lambda s: (s - s.mean()) / (s.std() + 1e-9)  # noqa: E731
        scores = {
            "image+audio": images @ F.normalize(images[i] + audio[j], dim=0),
            "image+audio (z)": z(s_img) + z(s_aud),
            "image": s_img,
            "audio": s_aud,
        }
        for name, sim in scores.items():
            sim = sim.clone()
            sim[[i, j]] = -float("inf")
            top = sim.topk(k).indices
            both = (labels[top] == want_cls) & (colours[top] == want_col)
            s = stats[name]
            s["both@1"] += float(both[0])
            s[f"both@{k}"] += both.float().mean().item()
            s["class@1"] += float(labels[top[0]] == want_cls)
            s["colour@1"] += float(colours[top[0]] == want_col)
    for s in stats.values():
        for key in s:
            s[key] = s[key] / max(done, 1)
    return {
        "queries": done,
        "hit": "a retrieved image has the audio's class AND the query image's colour",
        "chance_both": 1.0 / (int(labels.max()) + 1) / len(COLOUR_NAMES),
        **stats,
    }


def evaluate_world(
    encoders: Mapping[str, nn.Module],
    *,
    seed: int,
    samples: int = 500,
    gallery: int = 100,
    num_classes: int = len(CLASSES),
    batch_size: int = 50,
    workers: int = 0,
    device: "torch.device | str" = "cpu",
) -> dict[str, Any]:
    """The full report on ``samples`` held-out scenes of world ``seed`` (see module doc)."""
    device = torch.device(device)
    modalities = [m for m in encoders if m != "text"]
    source = WorldSource(seed, num_classes)
    steps = -(-samples // batch_size)
    batches = StepBatches(source, modalities, batch_size, seed=seed)
    emb: dict[str, list[Tensor]] = {m: [] for m in modalities}
    labels, colours = [], []
    for batch in step_loader(batches, 0, steps, workers):
        labels.append(batch["label"])
        colours.append(batch["colour"])
        for m in modalities:
            emb[m].append(encode(encoders[m], batch[m], device))
    E = {m: torch.cat(v)[:samples] for m, v in emb.items()}
    y, c = torch.cat(labels)[:samples], torch.cat(colours)[:samples]
    classes = list(CLASSES[:num_classes])
    report: dict[str, Any] = {
        "world": {"seed": seed, "samples": samples, "classes": classes, "chance_top1": 1 / num_classes},
    }
    if "text" in encoders:
        report["zero_shot_prompts"] = {m: PROMPTS[m] for m in modalities}
        report["zero_shot_top1"] = {
            m: zero_shot_top1(E[m], y, class_text_embeddings(encoders["text"], PROMPTS[m], device, classes))
            for m in modalities
        }
    if "vision" in E:
        report["retrieval"] = {
            "gallery": min(gallery, samples),
            "chance": {"R@1": 1 / min(gallery, samples), "R@5": 5 / min(gallery, samples)},
            **{f"{m}->image": recall_at(E[m], E["vision"], gallery=gallery) for m in modalities if m != "vision"},
        }
        if "audio" in E:
            report["arithmetic"] = arithmetic_probe(E["vision"], E["audio"], y, c, seed=seed)
    return report


def evaluate_pairs(
    encoders: Mapping[str, nn.Module],
    source: Any,
    indices: Sequence[int],
    modality: str,
    *,
    gallery: int = 100,
    batch_size: int = 32,
    device: "torch.device | str" = "cpu",
) -> dict[str, Any]:
    """Held-out real pairs: ``modality->image`` recall@1/5 (galleries of ``gallery`` pairs)."""
    device = torch.device(device)
    q, k = [], []
    for batch in iter_batches(source, indices, ("vision", modality), batch_size):
        q.append(encode(encoders[modality], batch[modality], device))
        k.append(encode(encoders["vision"], batch["vision"], device))
    g = min(gallery, len(indices))
    return {
        "held_out_pairs": len(indices),
        "gallery": g,
        "chance": {"R@1": 1 / g, "R@5": min(5 / g, 1.0)},
        f"{modality}->image": recall_at(torch.cat(q), torch.cat(k), gallery=g),
    }
