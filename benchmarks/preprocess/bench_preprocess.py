"""bindrt's preprocessing against the reference's way of doing it, side by side (issue 18, item 3).

Three pairs, each first checked for parity on the same inputs, then timed in interleaved
rounds (the side that goes first alternates), medians and the median of the per-round ratios:

- **text**: ``bindrt.preprocess.tokenize`` against the reference's pure-Python CLIP
  ``SimpleTokenizer`` (open_clip's ``open_clip.tokenizer.SimpleTokenizer``, the same code) on
  fresh captions: 6-16 word-like ASCII words no earlier caption of the run used, both sides' BPE
  caches cleared before every timed call. **text-unicode**: the same with one word of each caption
  carrying a non-ASCII letter (such text goes through ftfy on both sides). Parity: identical
  token ids for every caption, and for fixed captions of entities, mojibake, unicode, truncation.
- **audio**: ``bindrt.preprocess.kaldi_fbank_batch`` on a batch of 2 s clips against
  ``torchaudio.compliance.kaldi.fbank`` called per clip with the reference's options.
  Parity: per clip, max |diff| of the log-mel values <= 1e-3 plus torchaudio's own float32 rounding
  (its float32 result against its float64 one): FFTs in different precisions cannot agree bit for bit.
- **vision**: ``bindrt.preprocess.preprocess_images`` on encoded bytes against the reference's
  torchvision ``Compose([Resize(224, BICUBIC), CenterCrop(224), ToTensor(), Normalize])`` on
  ``Image.open(bytes).convert("RGB")``. Parity: max |diff| <= 1e-5.

Targets (issue 18): text >= 10x the reference's captions/s (both text rows), audio >= 5x its clips/s, vision >= 1x.

A reference library that is missing is reported as skipped, with the reason; bindrt's side is still
timed. A library whose package ``__init__`` fails to import here (PyPI's torchvision and torchaudio
wheels are CUDA builds whose C extensions need ``libtorch_cuda``, absent from a ``+cpu`` torch; open_clip's
``__init__`` imports torchvision) has the one module used loaded from its installed files without that
``__init__``: the reference's own, unmodified code; the report says so. ``--ref-path DIR`` (or
``BINDRT_REF_PATH``) adds a folder of such packages, e.g. one made with
``pip install --no-deps --target DIR torchaudio torchvision``, to the end of ``sys.path``.

    python -m benchmarks.preprocess.bench_preprocess [--quick] [--rounds N] [--ref-path DIR] [--out DIR]

Writes ``benchmarks/results/<date>-<cpu>/preprocess/<date>-<tag>.{json,md}`` (tag ``preprocess``,
``preprocess-quick`` for ``--quick``).
"""

from __future__ import annotations

import abc
import argparse
import gzip
import importlib
import importlib.metadata
import importlib.util
import io
import os
import statistics
import sys
import time
import types
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import machine_info, report_header, write_report
from bindrt.bench.raw_inputs import FreshWords

ROOT = Path(__file__).resolve().parents[2]
SHARED_MEDIA = ROOT.parent / "shared" / "reference" / "golden" / "media"
SAMPLES = ROOT / "bindrt" / "data" / "samples"

TARGETS = {"text": 10.0, "text-unicode": 10.0, "audio": 5.0, "vision": 1.0}
UNITS = {"text": "captions/s", "text-unicode": "captions/s", "audio": "clips/s", "vision": "images/s"}
FBANK_BOUND = 1e-3  # log-mel units; tests/test_preprocess_audio.py's bound against torchaudio
IMAGE_BOUND = 1e-5  # normalised pixel units; the golden-tensor bound of tests/test_preprocess_image.py
NOISY_SPREAD = 1.3  # slowest / fastest round of one side above this: the machine was likely busy
FBANK_KW = dict(  # the reference's call (ImageBind's waveform2melspec)
    htk_compat=True,
    sample_frequency=16000,
    use_energy=False,
    window_type="hanning",
    num_mel_bins=128,
    dither=0.0,
    frame_length=25,
    frame_shift=10,
)
CLIP_SAMPLES = 32000
BINDRT_CALLS = {
    "text": "tokenize",
    "text-unicode": "tokenize",
    "audio": "kaldi_fbank_batch on the stacked clips",
    "vision": "preprocess_images on the bytes",
}  # 2 s at 16 kHz, the reference's clip


# ---------------------------------------------------------------- reference libraries
def load_reference(package: str, module: str, dist: str) -> tuple[types.ModuleType | None, dict[str, Any]]:
    """``package.module`` and a note of how it was loaded, or (None, note with the reason it is missing)."""
    note: dict[str, Any] = {"module": f"{package}.{module}", "distribution": dist}
    try:
        version = importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        version = None
    note["version"] = version
    try:
        mod = importlib.import_module(f"{package}.{module}")
        note["loaded"] = "import"
        return mod, note
    except ModuleNotFoundError as exc:
        if exc.name == package or version is None:
            note["skipped"] = f"{dist} is not installed"
            return None, note
        failure = f"{type(exc).__name__}: {exc}"
    except Exception as exc:  # a broken package __init__ (e.g. a C extension built for CUDA torch)
        failure = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    for name in [n for n in sys.modules if n == package or n.startswith(package + ".")]:
        del sys.modules[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        note["skipped"] = f"{dist} cannot be imported ({failure})"
        return None, note
    stub = types.ModuleType(package)
    stub.__path__ = list(spec.submodule_search_locations)
    stub.__file__ = spec.origin
    sys.modules[package] = stub
    try:
        mod = importlib.import_module(f"{package}.{module}")
    except Exception as exc:
        note["skipped"] = f"{dist} cannot be imported ({failure}), nor {package}.{module} alone ({exc})"
        return None, note
    note["loaded"] = (
        f"{package}.{module} from {mod.__file__}, without {package}/__init__.py, which fails here: {failure}"
    )
    return mod, note


# ---------------------------------------------------------------- inputs
#: Fixed captions for parity only: cleaning, unicode, entities, truncation. Not the special-token strings:
#: the reference spells them <|startoftext|>/<|endoftext|>, open_clip <start_of_text>/<end_of_text>.
TRICKY_CAPTIONS = [
    "A photo of a dog.",
    "  Multiple   spaces\tand\nnewlines  ",
    "HTML &amp; entities &lt;b&gt; &#39;quoted&#39; &amp;amp;",
    "Unicode: café, naïve, Straße, 日本語のテキスト, emoji 🐶🚀",
    "Contractions: it's, don't, we're, they've, I'm, you'll, he'd, IT'S",
    "numbers 1234567890 and 3.14159",
    "mojibake: cafÃ© and â€œquotesâ€\x9d",
    "curly “quotes” and ‘single’ — dashes… ﬁne ligature",
    "ＦＵＬＬＷＩＤＴＨ ｔｅｘｔ",
    "punctuation!!! ??? ... ,,, ;;; :-) <3 #tag @user https://example.com/a?b=c",
    "",
    "supercalifragilisticexpialidocious" * 12,
    " ".join(["a large brown dog runs across the green field"] * 12),
]


def audio_clips(n: int, seed: int = 0) -> tuple[list[np.ndarray], list[str]]:
    """n mean-subtracted 2 s clips at 16 kHz: real media first (bindrt's decoder + resampler), then synthetic."""
    from bindrt.preprocess import load_audio, resample

    clips, names = [], []
    for path in [SAMPLES / "tone16k.wav", SHARED_MEDIA / "stereo22k.wav"]:
        if not path.exists():
            continue
        wav, sr = load_audio(str(path))
        x = resample(wav, sr, 16000)[0] if sr != 16000 else wav[0]
        x = np.resize(x, CLIP_SAMPLES).astype(np.float32)  # shorter files repeat
        clips.append(x)
        names.append(path.name)
    rng = np.random.default_rng(seed)
    t = np.arange(CLIP_SAMPLES) / 16000
    while len(clips) < n:
        f0 = rng.uniform(80, 4000)
        x = 0.3 * np.sin(2 * np.pi * (f0 + rng.uniform(-50, 50) * t) * t) * np.exp(-rng.uniform(0, 2) * t)
        x = x + rng.uniform(0.001, 0.2) * rng.standard_normal(CLIP_SAMPLES)
        clips.append(x.astype(np.float32))
        names.append(f"synthetic-{len(clips)}")
    clips = [(c - c.mean(dtype=np.float32)).astype(np.float32) for c in clips[:n]]  # as the pipeline does per clip
    return clips, names[:n]


def image_inputs() -> list[tuple[str, bytes]]:
    """Encoded real images: bindrt's sample photo, the reference's golden media, scikit-image's data (if present)."""
    from PIL import Image

    out = []
    for path in [SAMPLES / "photo.jpg", SHARED_MEDIA / "photo.jpg", SHARED_MEDIA / "logo.png"]:
        if path.exists():
            out.append((f"{path.parent.name}/{path.name}", path.read_bytes()))
    try:
        import skimage.data as skdata
    except ImportError:
        skdata = None
    if skdata is not None:
        for name, fmt in [
            ("astronaut", "JPEG"),
            ("camera", "PNG"),
            ("coffee", "JPEG"),
            ("chelsea", "PNG"),
            ("rocket", "JPEG"),
        ]:
            try:
                arr = getattr(skdata, name)()
            except Exception:  # a data file scikit-image would have to download
                continue
            buf = io.BytesIO()
            Image.fromarray(arr).save(buf, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
            out.append((f"skimage.{name}.{fmt.lower()}", buf.getvalue()))
    return out


# ---------------------------------------------------------------- the pairs
class Pair(abc.ABC):
    """One input kind: ``run(side, round)`` does a timed call's work; ``parity()`` checks the two sides."""

    kind: str
    reference_name: str
    ref_note: dict[str, Any]
    available: bool
    items: int

    def prepare(self, side: str, rnd: int) -> Any:  # untimed: fresh inputs, cleared caches
        return None

    @abc.abstractmethod
    def call(self, side: str, prepared: Any) -> Any:
        """One timed call of ``side`` ("bindrt" or "reference") on what :meth:`prepare` made."""


class TextPair(Pair):
    kind = "text"

    def __init__(self, n: int, rounds: int, seed: int = 18, accented: bool = False):
        self.kind = "text-unicode" if accented else "text"
        from bindrt.preprocess.text import get_tokenizer

        self.tok = get_tokenizer()
        mod, self.ref_note = load_reference("open_clip", "tokenizer", "open_clip_torch")
        self.reference_name = "open_clip.tokenizer.SimpleTokenizer (the reference's pure-Python CLIP tokenizer)"
        self.available = mod is not None
        self.items = n
        self.words = FreshWords(seed + accented, accented)
        self.round_captions = [self.words.captions(n) for _ in range(rounds)]
        self.warm_captions = self.words.captions(min(n, 50))
        if self.available:
            self.ref = mod.SimpleTokenizer()
            self.ref_cache0 = dict(getattr(self.ref, "cache", {}))
            self.ref_note["same_merges_file"] = self._same_merges(mod)

    def _same_merges(self, mod: types.ModuleType) -> bool:
        from importlib import resources

        ours = gzip.decompress(
            resources.files("bindrt.preprocess").joinpath("bpe_simple_vocab_16e6.txt.gz").read_bytes()
        )
        return gzip.decompress(Path(mod.default_bpe()).read_bytes()) == ours

    def clear(self) -> None:
        self.tok.clear_cache()
        if self.available:
            self.ref.cache = dict(self.ref_cache0)
            if hasattr(self.ref.bpe, "cache_clear"):
                self.ref.bpe.cache_clear()

    def prepare(self, side: str, rnd: int) -> Any:
        self.clear()
        return self.warm_captions if rnd < 0 else self.round_captions[rnd]

    def call(self, side: str, captions: Any) -> Any:
        from bindrt.preprocess import tokenize

        return tokenize(captions) if side == "bindrt" else self.ref(captions, context_length=77).numpy()

    def parity(self) -> dict[str, Any]:
        texts = TRICKY_CAPTIONS + [c for r in self.round_captions for c in r]
        self.clear()
        ours = self.call("bindrt", texts)
        self.clear()
        theirs = self.call("reference", texts)
        bad = [i for i in range(len(texts)) if not np.array_equal(ours[i], theirs[i])]
        return {
            "criterion": "identical token ids (77 per caption) for every caption",
            "checked": len(texts),
            "fixed_captions": len(TRICKY_CAPTIONS),
            "mismatches": len(bad),
            "first_mismatch": texts[bad[0]] if bad else None,
            "passed": not bad,
        }


class AudioPair(Pair):
    kind = "audio"

    def __init__(self, n: int):
        self.ref_mod, self.ref_note = load_reference("torchaudio", "compliance.kaldi", "torchaudio")
        self.reference_name = "torchaudio.compliance.kaldi.fbank, per clip (the reference's call)"
        self.available = self.ref_mod is not None
        self.items = n
        self.clips, self.names = audio_clips(n)

    def call(self, side: str, prepared: Any) -> Any:
        from bindrt.preprocess import kaldi_fbank_batch

        if side == "bindrt":
            return kaldi_fbank_batch(np.stack(self.clips))
        if side == "bindrt-per-clip":
            from bindrt.preprocess import kaldi_fbank

            return [kaldi_fbank(c) for c in self.clips]
        import torch

        return [self.ref_mod.fbank(torch.from_numpy(c)[None], **FBANK_KW) for c in self.clips]

    def parity(self) -> dict[str, Any]:
        """Against the reference as it runs (float32); its own float32 rounding sets how close "exact" can be."""
        import torch

        ours = self.call("bindrt", None)
        theirs = np.stack([t.numpy() for t in self.call("reference", None)])
        exact = np.stack(
            [self.ref_mod.fbank(torch.from_numpy(c.astype(np.float64))[None], **FBANK_KW).numpy() for c in self.clips]
        )
        per_clip = np.abs(ours - theirs).reshape(len(self.clips), -1).max(axis=1)
        own = np.abs(theirs - exact).reshape(len(self.clips), -1).max(axis=1)  # the reference's float32 rounding
        return {
            "criterion": f"per clip, max |bindrt - torchaudio| <= {FBANK_BOUND:g} + max |torchaudio float32 - "
            "torchaudio float64| (the reference's own float32 rounding), over every frame and bin",
            "checked": len(self.clips),
            "inputs": sorted(set(n if not n.startswith("synthetic") else "synthetic" for n in self.names)),
            "shape": list(ours.shape),
            "max_abs_diff": float(per_clip.max()),
            "reference_own_rounding": float(own.max()),
            "max_abs_diff_vs_float64_reference": float(np.abs(ours - exact).max()),
            "same_peak_bin_fraction": float((ours.argmax(-1) == theirs.argmax(-1)).mean()),
            "bound": FBANK_BOUND,
            "passed": bool((per_clip <= FBANK_BOUND + own).all()),
        }


class VisionPair(Pair):
    kind = "vision"

    def __init__(self, n: int):
        mod, self.ref_note = load_reference("torchvision", "transforms", "torchvision")
        self.reference_name = (
            "torchvision Compose([Resize(224, BICUBIC), CenterCrop(224), ToTensor(), Normalize(CLIP mean, std)]) "
            "on Image.open(bytes).convert('RGB'), then torch.stack"
        )
        self.available = mod is not None
        self.inputs = image_inputs()
        self.items = n
        self.batch = [self.inputs[i % len(self.inputs)][1] for i in range(n)]
        if self.available:
            from bindrt.preprocess import IMAGE_MEAN, IMAGE_STD

            T = mod
            self.transform = T.Compose(
                [
                    T.Resize(224, interpolation=T.InterpolationMode.BICUBIC),
                    T.CenterCrop(224),
                    T.ToTensor(),
                    T.Normalize(mean=IMAGE_MEAN, std=IMAGE_STD),
                ]
            )

    def _reference(self, batch: list[bytes]) -> Any:
        import torch
        from PIL import Image

        return torch.stack([self.transform(Image.open(io.BytesIO(b)).convert("RGB")) for b in batch])

    def call(self, side: str, prepared: Any) -> Any:
        from bindrt.preprocess import preprocess_images

        return preprocess_images(self.batch) if side == "bindrt" else self._reference(self.batch)

    def parity(self) -> dict[str, Any]:
        from bindrt.preprocess import preprocess_images

        data = [b for _, b in self.inputs]
        ours = preprocess_images(data)
        theirs = self._reference(data).numpy()
        diffs = np.abs(ours - theirs).reshape(len(data), -1).max(axis=1)
        return {
            "criterion": f"max |diff| of the normalised (3, 224, 224) tensors <= {IMAGE_BOUND:g}",
            "checked": len(data),
            "inputs": [name for name, _ in self.inputs],
            "max_abs_diff": float(diffs.max()),
            "bit_identical": int((diffs == 0).sum()),
            "bound": IMAGE_BOUND,
            "passed": bool(diffs.max() <= IMAGE_BOUND),
        }


# ---------------------------------------------------------------- timing
def _timed(pair: Pair, side: str, rnd: int) -> float:
    prepared = pair.prepare(side, rnd)
    start = time.perf_counter()
    pair.call(side, prepared)
    return time.perf_counter() - start


def _side(seconds: list[float], items: int) -> dict[str, Any]:
    rates = [items / s for s in seconds]
    return {
        "items_per_s": statistics.median(rates),
        "ms_per_item": statistics.median(seconds) / items * 1e3,
        "round_s": [round(s, 6) for s in seconds],
        "spread": max(seconds) / min(seconds),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.ref_path:
        for p in args.ref_path.split(os.pathsep):
            if p and p not in sys.path:
                sys.path.append(p)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    wanted = args.kinds.split(",")
    pairs: list[Pair] = []
    if "text" in wanted:
        pairs.append(TextPair(args.captions, args.rounds))
    if "text-unicode" in wanted:
        pairs.append(TextPair(args.captions, args.rounds, accented=True))
    if "audio" in wanted:
        pairs.append(AudioPair(args.clips))
    if "vision" in wanted:
        pairs.append(VisionPair(args.images))

    results: dict[str, Any] = {}
    sides: dict[str, list[str]] = {}
    for pair in pairs:
        sides[pair.kind] = ["reference", "bindrt"] if pair.available else ["bindrt"]
        if pair.kind == "audio":
            sides[pair.kind].append("bindrt-per-clip")
        parity = pair.parity() if pair.available else None
        results[pair.kind] = {
            "unit": UNITS[pair.kind],
            "items_per_round": pair.items,
            "bindrt": BINDRT_CALLS[pair.kind],
            "reference": pair.reference_name,
            "reference_library": pair.ref_note,
            "available": pair.available,
            "skipped": pair.ref_note.get("skipped"),
            "parity": parity,
        }
        for side in sides[pair.kind]:  # warm-up, excluded: first calls, lazy imports, allocator
            pair.prepare(side, -1)
            pair.call(side, pair.prepare(side, -1))
    times: dict[str, dict[str, list[float]]] = {p.kind: {s: [] for s in sides[p.kind]} for p in pairs}
    for rnd in range(args.rounds):
        for pair in pairs:
            order = sides[pair.kind] if rnd % 2 == 0 else sides[pair.kind][::-1]
            for side in order:
                times[pair.kind][side].append(_timed(pair, side, rnd))
    for pair in pairs:
        r = results[pair.kind]
        t = times[pair.kind]
        for side in sides[pair.kind]:
            r[side.replace("-", "_") + "_timing"] = _side(t[side], pair.items)
        if pair.available:
            ratios = [ref / ours for ref, ours in zip(t["reference"], t["bindrt"])]  # per round: same inputs
            r["ratio"] = statistics.median(ratios)
            r["round_ratios"] = [round(x, 3) for x in ratios]
            r["target"] = TARGETS[pair.kind]
            r["met"] = r["ratio"] >= TARGETS[pair.kind] and bool(r["parity"]["passed"])
            r["noisy"] = max(r["reference_timing"]["spread"], r["bindrt_timing"]["spread"]) > NOISY_SPREAD
        else:
            r.update(ratio=None, round_ratios=None, target=TARGETS[pair.kind], met=None, noisy=None)
    machine = machine_info()
    return {
        "benchmark": "bindrt preprocessing against the reference's way (issue 18, item 3)",
        "suite": "preprocess",
        "date": machine["date"],
        "machine": machine,
        "quick": args.quick,
        "settings": {
            "rounds": args.rounds,
            "captions": args.captions,
            "clips": args.clips,
            "images": args.images,
            "torch_threads": torch.get_num_threads(),
            "ref_path": args.ref_path or None,
        },
        "load_average": {"before": list(load_before), "after": list(os.getloadavg())},
        "method": "parity first on the same inputs; then per round one timed call per side on the same inputs "
        "(the side that goes first alternates; text: fresh captions each round, both BPE caches cleared before "
        "each call), after one untimed warm-up call per side; items/s = median over rounds, ratio = median over "
        "rounds of reference seconds / bindrt seconds; a target is met when ratio >= target and parity passed",
        "results": results,
    }


def markdown(report: dict[str, Any]) -> str:
    s = report["settings"]
    settings = (
        f"- settings: {s['rounds']} rounds; {s['captions']} captions, {s['clips']} clips of 2 s, {s['images']} images "
        f"per round; torch threads {s['torch_threads']}; load average {report['load_average']['before'][0]:.2f} "
        f"before, {report['load_average']['after'][0]:.2f} after"
    )
    title = "bindrt preprocessing against the reference's way" + (
        " (quick form: timings mean nothing)" if report["quick"] else ""
    )
    lines = [
        *report_header(title, report, notes=[settings, f"- method: {report['method']}"]),
        "| input | reference | reference items/s | bindrt items/s | ratio | target | met | parity |",
        "|---|---|---:|---:|---:|---:|---|---|",
    ]
    for kind, r in report["results"].items():
        ours = f"{r['bindrt_timing']['items_per_s']:,.1f}"
        if r["available"]:
            p = r["parity"]
            diff = f", max diff {p['max_abs_diff']:.1e}" if "max_abs_diff" in p else ""
            parity = f"{'passed' if p['passed'] else 'FAILED'} ({p['checked']} inputs{diff})"
            theirs = f"{r['reference_timing']['items_per_s']:,.1f}"
            ratio = f"{r['ratio']:.2f}x" + (" (noisy)" if r["noisy"] else "")
            met = "met" if r["met"] else "**missed**"
            ref = r["reference_library"]
            name = f"{ref['module']} {ref['version']}"
        else:
            parity, theirs, ratio, met, name = "not checked", "-", "-", "not compared", f"skipped: {r['skipped']}"
        lines.append(
            f"| {kind} ({r['unit']}) | {name} | {theirs} | {ours} | {ratio} | >= {r['target']:g}x | {met} | {parity} |"
        )
    lines.append("")
    for kind, r in report["results"].items():
        ref = r["reference_library"]
        lines.append(f"- {kind}: bindrt `{r['bindrt']}`; reference {r['reference']}.")
        if ref.get("loaded") and ref["loaded"] != "import":
            lines.append(f"  Loaded as {ref['loaded']}.")
        if "bindrt_per_clip_timing" in r:
            lines.append(
                f"  bindrt's per-clip `kaldi_fbank` (context, not a reference): {r['bindrt_per_clip_timing']['items_per_s']:,.1f} clips/s."
            )
        if r["available"]:
            lines.append(f"  Parity: {r['parity']['criterion']}; per-round ratios {r['round_ratios']}.")
            if "reference_own_rounding" in r["parity"]:
                pr = r["parity"]
                lines.append(
                    f"  torchaudio float32 vs its own float64: {pr['reference_own_rounding']:.1e}; bindrt vs torchaudio "
                    f"float64: {pr['max_abs_diff_vs_float64_reference']:.1e}; same peak bin in "
                    f"{pr['same_peak_bin_fraction']:.2%} of frames."
                )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="a few items, one round (CI): checks the report, not speed")
    p.add_argument("--rounds", type=int, default=None, help="timed rounds (default 7; --quick: 1)")
    p.add_argument("--captions", type=int, default=None, help="captions per round (default 1000; --quick: 40)")
    p.add_argument("--clips", type=int, default=None, help="2 s clips per round (default 96; --quick: 4)")
    p.add_argument("--images", type=int, default=None, help="images per round (default 48; --quick: 4)")
    p.add_argument("--kinds", default="text,text-unicode,audio,vision")
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's own)")
    p.add_argument(
        "--ref-path", default=os.environ.get("BINDRT_REF_PATH", ""), help="extra folder(s) of reference packages"
    )
    p.add_argument("--out", help="results folder (default benchmarks/results/<date>-<cpu>/preprocess)")
    p.add_argument("--tag", default=None)
    args = p.parse_args(argv)
    quick = args.quick
    args.rounds = args.rounds or (1 if quick else 7)
    args.captions = args.captions or (40 if quick else 1000)
    args.clips = args.clips or (4 if quick else 96)
    args.images = args.images or (4 if quick else 48)
    report = run(args)
    print(markdown(report))
    write_report(report, markdown, args.out, "preprocess", args.tag or ("preprocess-quick" if quick else "preprocess"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
