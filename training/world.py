"""A procedural multimodal world: one latent scene, six independent renderers.

Every sample is a latent :class:`Scene` (object class, colour, size, position,
rotation, temperature, speed). Six generators render it, each with its own
random stream for nuisances, so modalities share *only* the latent scene:

==========  =====================================================================
vision      RGB 224x224 (CLIP-normalised): the class's silhouette filled with the
            colour (shaded, textured) over a random two-colour gradient with
            low-frequency texture and 3-7 small distractor shapes of other classes.
text        a caption from varied templates (class always; colour, size, position
            often), tokenised by bindrt's CLIP tokenizer.
audio       2 s at 16 kHz -> bindrt's Kaldi fbank -> (1, 128, 204). The class sets
            the pitch register, envelope (steady, pulsed, tremolo, chirp up/down)
            and timbre; size lowers the pitch. Coloured background noise, a
            distractor tone, random onset, gain and length.
depth       (1, 224, 224) disparity: ground plane and random boxes behind the
            object (closer when larger); a class-specific 3-D profile (dome,
            ridge, ...); sensor noise, holes, quantisation.
thermal     (1, 224, 224): ambient field, warm and cold distractor blobs, the
            object at its temperature with a class-specific heat pattern (hot
            core, hot rim, gradient...); optical blur, stripe noise, sensor noise.
imu         (6, 2000) = 10 s at 200 Hz, accelerometer xyz (g) + gyroscope xyz
            (rad/s) in the body frame: the class sets which axes move, the
            waveform (sine, bounce, square, saw) and the rhythm; size slows the
            rhythm, speed scales it. Gravity under a random tilt, bias, drift,
            noise and random bumps.
==========  =====================================================================

Sample ``i`` of seed ``s`` is a pure function of ``(s, i)``; each modality's
renderer draws from ``numpy.random.default_rng([s, i, modality_id])``, so
rendering only some modalities never changes the others.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass

import numpy as np

from bindrt.layouts import IMAGE_SIZE

SIZE = IMAGE_SIZE
CLASSES = ("ball", "box", "tent", "cross", "ring", "star", "log", "tower", "moon", "dumbbell")
COLOURS = {
    "red": (0.86, 0.12, 0.10),
    "green": (0.10, 0.70, 0.18),
    "blue": (0.12, 0.25, 0.90),
    "yellow": (0.95, 0.88, 0.10),
    "purple": (0.55, 0.12, 0.75),
    "orange": (0.98, 0.52, 0.05),
    "white": (0.97, 0.97, 0.97),
    "black": (0.05, 0.05, 0.05),
}
COLOUR_NAMES = tuple(COLOURS)
#: Zero-shot prompts: the non-text modalities never see a caption while training.
PROMPTS = {
    "vision": "a photo of a {}",
    "audio": "a sound of a {}",
    "depth": "a depth map of a {}",
    "thermal": "a thermal image of a {}",
    "imu": "the motion of a {}",
}
TEXTURE, CLUTTER = 0.5, (3, 8)
RELIEF, HEAT_TEXTURE = 0.35, 0.3
AMBIENT, MAX_RANGE, DROPOUT = -0.1, 2.0, 0.005
RADIUS_MIN, RADIUS_SPAN = 40.0, 64.0  # object radius in pixels: 40 + 64 * size (size is a shared cue: make it visible)
SIBLINGS = 2  # consecutive scenes sharing class and colour
MODALITY_IDS = {"vision": 1, "text": 2, "audio": 3, "depth": 4, "thermal": 5, "imu": 6}
CLIP_MEAN = np.array([0.48145466, 0.4578275, 0.40821073], np.float32)[:, None, None]
CLIP_STD = np.array([0.26862954, 0.26130258, 0.27577711], np.float32)[:, None, None]

# Per-class signatures, one row per class, in CLASSES order.
#   depth profile: 0 flat, 1 dome, 2 ridge (peak on the centre line), 3 bowl (rim high), 4 slope
#   heat pattern:  0 uniform, 1 hot core, 2 hot rim, 3 hot top, 4 hot left, 5 cold core
#   envelope:      0 steady, 1 pulsed, 2 tremolo, 3 chirp up, 4 chirp down
#   timbre:        0 pure, 1 odd harmonics, 2 all harmonics (+ band noise when 2)
#   motion:        accelerometer axis, gyroscope axis, wave (0 sine, 1 bounce, 2 square, 3 saw)
#   surface pattern (vision, depth relief, thermal): (kind, angle in degrees, period in pixels)
#                  kinds: 0 stripes, 1 checker, 2 dots, 3 concentric rings, 4 plain
PATTERN = (
    (0, 0, 6),
    (1, 0, 12),
    (0, 60, 6),
    (2, 0, 10),
    (0, 120, 6),
    (0, 0, 12),
    (3, 0, 9),
    (0, 60, 12),
    (4, 0, 0),
    (0, 120, 12),
)
DEPTH_PROFILE = (1, 0, 2, 0, 3, 1, 2, 4, 4, 3)
HEAT_PATTERN = (1, 5, 3, 0, 2, 1, 4, 3, 5, 2)
AUDIO_F0 = tuple(float(f) for f in np.geomspace(140.0, 1500.0, len(CLASSES)))
ENVELOPE = (1, 0, 2, 4, 3, 1, 0, 2, 3, 4)
TIMBRE = (0, 1, 2, 2, 0, 1, 1, 0, 2, 1)
ACC_AXIS = (2, 0, 1, 1, 0, 2, 0, 2, 1, 2)
GYRO_AXIS = (0, 2, 2, 0, 1, 1, 2, 0, 1, 2)
MOTION_WAVE = (1, 0, 2, 3, 0, 2, 3, 1, 0, 3)
MOTION_HZ = (2.2, 0.7, 1.4, 3.0, 1.0, 4.2, 2.0, 0.5, 3.4, 1.2)


@dataclass(frozen=True)
class Scene:
    cls: int  # index into CLASSES
    colour: int  # index into COLOUR_NAMES
    size: float  # 0 (small) .. 1 (large): object radius 40..104 px, lower pitch and louder, slower rhythm
    x: float  # object centre, pixels
    y: float
    angle: float  # rotation, radians (small: +-15 degrees)
    temperature: float  # 0 (cold) .. 1 (hot), relative to ambient
    speed: float  # 0 .. 1, motion amplitude

    @property
    def radius(self) -> float:
        return RADIUS_MIN + RADIUS_SPAN * self.size

    @property
    def size_word(self) -> str:
        return "small" if self.size < 1 / 3 else "large" if self.size > 2 / 3 else "medium"


class World:
    """Deterministic procedural world: ``world.sample(i)`` is always the same sample."""

    def __init__(self, seed: int = 0, num_classes: int = len(CLASSES)) -> None:
        if not 2 <= num_classes <= len(CLASSES):
            raise ValueError(f"num_classes must be in 2..{len(CLASSES)}, got {num_classes}")
        self.seed = int(seed)
        self.num_classes = num_classes

    def rng(self, index: int, stream: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, int(index), stream])

    def scene(self, index: int) -> Scene:
        """Latents of scene ``index``. Scenes come in sibling pairs (2k, 2k+1) that share class and
        colour and differ in everything else, so every batch holds look-alikes that only size,
        position (and each modality's other cues) tell apart."""
        family = np.random.default_rng([self.seed, int(index) // SIBLINGS, 0])
        r = self.rng(index, 7)
        size = float(r.uniform())
        margin = 0.85 * (RADIUS_MIN + RADIUS_SPAN * size)
        return Scene(
            cls=int(family.integers(self.num_classes)),
            colour=int(family.integers(len(COLOURS))),
            size=size,
            x=float(r.uniform(margin, SIZE - margin)),
            y=float(r.uniform(margin, SIZE - margin)),
            angle=float(r.uniform(-0.26, 0.26)),
            temperature=float(r.uniform()),
            speed=float(r.uniform()),
        )

    def sample(self, index: int, modalities: "tuple[str, ...] | list[str]", visit: int = 0) -> dict:
        """Render scene ``index`` into ``modalities``; also returns its index and latent labels.

        ``visit`` (the epoch, when a pool of scenes is cycled) re-draws the caption only:
        the same scene gets new wording each epoch, every other modality stays fixed.
        """
        s = self.scene(index)
        out: dict = {"index": int(index), "label": s.cls, "colour": s.colour, "size": s.size}
        for m in modalities:
            key = [self.seed, int(index), MODALITY_IDS[m]] + ([int(visit)] if m == "text" and visit else [])
            out[m] = RENDERERS[m](s, np.random.default_rng(key))
        return out


# ---------------------------------------------------------------------------- geometry
def _sdf(cls: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Signed distance (approx., in object radii) of class ``cls``'s silhouette; < 0 inside. v points up."""
    r = np.sqrt(u * u + v * v)
    au, av = np.abs(u), np.abs(v)
    name = CLASSES[cls]
    if name == "ball":
        return r - 1.0
    if name == "box":
        return np.maximum(au, av) - 0.8
    if name == "tent":  # triangle pointing up
        return np.maximum(-v - 0.75, (au * 1.6 + v * 0.8 - 0.85) / 1.8)
    if name == "cross":
        return np.minimum(np.maximum(au - 0.3, av - 0.95), np.maximum(av - 0.3, au - 0.95))
    if name == "ring":
        return np.abs(r - 0.75) - 0.25
    if name == "star":
        theta = np.arctan2(v, u)
        return (r - (0.62 + 0.38 * np.cos(5 * theta + math.pi / 2))) * 0.6
    if name == "log":
        return np.maximum(au - 1.0, av - 0.32)
    if name == "tower":
        return np.maximum(au - 0.32, av - 1.0)
    if name == "moon":
        return np.maximum(r - 1.0, 0.82 - np.sqrt((u - 0.5) ** 2 + v * v))
    # dumbbell: two disks and a bar
    return np.minimum(np.sqrt((au - 0.6) ** 2 + v * v) - 0.4, np.maximum(au - 0.6, av - 0.12))


def _local(cx: float, cy: float, radius: float, angle: float, box: int = SIZE):
    """Pixel window around an object and its rotated, radius-scaled coordinates (u right, v up)."""
    pad = radius * 1.05 + 2
    y0, y1 = max(int(cy - pad), 0), min(int(cy + pad) + 1, box)
    x0, x1 = max(int(cx - pad), 0), min(int(cx + pad) + 1, box)
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    dx, dy = (xx - cx) / radius, (cy - yy) / radius
    c, s = math.cos(angle), math.sin(angle)
    return (slice(y0, y1), slice(x0, x1)), c * dx + s * dy, -s * dx + c * dy


def _pattern(
    cls: int, u: np.ndarray, v: np.ndarray, radius: float, rng: np.random.Generator, stretch: float = 1.0
) -> np.ndarray:
    """The class's surface pattern in [-1, 1], in the object's frame at a fixed pixel period (times ``stretch``)."""
    kind, angle, period = PATTERN[cls]
    if kind == 4:
        return np.zeros_like(u)
    period = period * stretch * rng.uniform(0.9, 1.1)
    x, y = u * radius / period + rng.uniform(), v * radius / period + rng.uniform()
    if kind == 0:
        a = math.radians(angle)
        return np.cos(2 * np.pi * (x * math.cos(a) + y * math.sin(a)))
    if kind == 1:
        return 0.8 * np.sign(np.cos(2 * np.pi * x) * np.cos(2 * np.pi * y))
    if kind == 2:
        return (np.cos(2 * np.pi * x) + 1) * (np.cos(2 * np.pi * y) + 1) / 2 - 1
    if kind == 5:  # sawtooth ramps along a direction: a consistent brightness gradient inside every patch
        a = math.radians(angle)
        return 2 * np.mod(x * math.cos(a) + y * math.sin(a), 1.0) - 1
    return np.cos(2 * np.pi * np.sqrt(u * u + v * v) * radius / period)


def _alpha(sdf: np.ndarray, radius: float) -> np.ndarray:
    """Anti-aliased coverage (about one pixel of soft edge)."""
    return np.clip(0.5 - sdf * radius, 0.0, 1.0)


def _smooth_noise(rng: np.random.Generator, cells: int, channels: int = 1) -> np.ndarray:
    """Low-frequency noise (channels, 224, 224) in about [-1, 1]: bilinear upsampling of a coarse grid."""
    grid = rng.standard_normal((channels, cells + 1, cells + 1), dtype=np.float32)
    up = _upsampler(cells)
    return up @ grid @ up.T


@functools.lru_cache(maxsize=32)
def _upsampler(cells: int) -> np.ndarray:
    """(224, cells + 1) bilinear interpolation weights."""
    t = np.linspace(0, cells, SIZE)
    i = np.minimum(t.astype(int), cells - 1)
    m = np.zeros((SIZE, cells + 1), np.float32)
    m[np.arange(SIZE), i] = 1 - (t - i)
    m[np.arange(SIZE), i + 1] = t - i
    return m


_NOISE = np.random.default_rng(20240607).standard_normal(1 << 21, dtype=np.float32)


def _gauss(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Unit Gaussian noise of ``shape``: a window at a random offset of a fixed bank (5x faster than drawing)."""
    n = int(np.prod(shape))
    start = int(rng.integers(0, len(_NOISE) - n))
    return _NOISE[start : start + n].reshape(shape)


def _blur(x: np.ndarray, k: int) -> np.ndarray:
    """Separable box blur of width 2k+1 on the last two axes (edges clamped)."""
    for axis in (-1, -2):
        pad = [(0, 0)] * x.ndim
        pad[axis] = (k + 1, k)
        c = np.cumsum(np.pad(x, pad, mode="edge"), axis=axis)
        n = x.shape[axis]
        x = (np.take(c, range(2 * k + 1, 2 * k + 1 + n), axis=axis) - np.take(c, range(n), axis=axis)) / (2 * k + 1)
    return x


def _distractors(rng: np.random.Generator, scene: Scene, count: int):
    """Small shapes of random classes, kept mostly clear of the object's centre."""
    for _ in range(count):
        radius = float(rng.uniform(9, 20))
        for _try in range(4):
            x, y = rng.uniform(radius, SIZE - radius, size=2)
            if math.hypot(x - scene.x, y - scene.y) > scene.radius * 0.9 + radius:
                break
        yield int(rng.integers(len(CLASSES))), float(x), float(y), radius, float(rng.uniform(-math.pi, math.pi))


# ---------------------------------------------------------------------------- renderers
def render_vision(scene: Scene, rng: np.random.Generator) -> np.ndarray:
    t = np.linspace(0, 1, SIZE, dtype=np.float32)
    a, b = rng.uniform(0.25, 0.75, size=(2, 3, 1, 1)).astype(np.float32)
    direction = rng.uniform(0, 2 * math.pi)
    ramp = math.cos(direction) * t[None, :] + math.sin(direction) * t[:, None]
    ramp = (ramp - ramp.min()) / (ramp.max() - ramp.min() + 1e-6)
    img = a + (b - a) * ramp[None] + 0.12 * _smooth_noise(rng, int(rng.integers(4, 12)), 3)
    for cls, x, y, radius, angle in _distractors(rng, scene, int(rng.integers(*CLUTTER))):
        win, u, v = _local(x, y, radius, angle)
        alpha = _alpha(_sdf(cls, u, v), radius)
        colour = rng.uniform(0, 1, size=(3, 1, 1)).astype(np.float32) + 0.2 * _pattern(cls, u, v, radius, rng)
        img[(slice(None), *win)] += alpha * (colour - img[(slice(None), *win)])
    win, u, v = _local(scene.x, scene.y, scene.radius, scene.angle)
    alpha = _alpha(_sdf(scene.cls, u, v), scene.radius)
    base = np.array(COLOURS[COLOUR_NAMES[scene.colour]], np.float32)[:, None, None]
    base = np.clip(base + rng.normal(0, 0.05, size=(3, 1, 1)).astype(np.float32), 0, 1)
    light = rng.uniform(-math.pi, math.pi)
    shade = 1.0 + 0.18 * (math.cos(light) * u + math.sin(light) * v)
    fill = base * shade[None] + TEXTURE * _pattern(scene.cls, u, v, scene.radius, rng)[None]
    fill += 0.04 * _gauss(rng, u.shape)
    img[(slice(None), *win)] += alpha * (fill - img[(slice(None), *win)])
    img += 0.04 * _gauss(rng, img.shape)
    return ((np.clip(img, 0, 1) - CLIP_MEAN) / CLIP_STD).astype(np.float32)


def _profile(kind: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Height towards the camera in [0, 1] over the silhouette's local coordinates."""
    r2 = np.minimum(u * u + v * v, 1.0)
    if kind == 0:
        return np.full_like(u, 0.5)
    if kind == 1:
        return np.sqrt(1.0 - r2)
    if kind == 2:
        return np.clip(1.0 - np.abs(u), 0, 1)
    if kind == 3:
        return r2
    return np.clip((v + 1) / 2, 0, 1)


DISPARITY_SCALE = 518.857901 * 0.075  # focal length (px) x baseline (m): bindrt.preprocess.depth's convention


def render_depth(scene: Scene, rng: np.random.Generator) -> np.ndarray:
    """Disparity in pixels (= 38.9 / depth in metres, bindrt's depth convention); 0 marks missing pixels."""
    rows = np.linspace(0, 1, SIZE, dtype=np.float32)[:, None]
    horizon = rng.uniform(0.2, 0.5)
    far = rng.uniform(5.0, 9.0)  # back wall
    ground = 1.4 + (far - 1.4) * np.clip((1 - rows) / (1 - horizon), 0, 1) ** 2  # floor: near at the bottom
    z = np.where(rows > horizon, ground, far) * np.ones((1, SIZE), np.float32)
    z = z * (1 + 0.05 * _smooth_noise(rng, 6)[0])
    for _ in range(int(rng.integers(2, 6))):  # clutter: boxes at random distances
        w, h = rng.integers(15, 60, size=2)
        x, y = rng.integers(0, SIZE - w), rng.integers(0, SIZE - h)
        z[y : y + h, x : x + w] = rng.uniform(1.5, 6.0)
    win, u, v = _local(scene.x, scene.y, scene.radius, scene.angle)
    alpha = _alpha(_sdf(scene.cls, u, v), scene.radius)
    distance = 1.5 - 0.8 * scene.size  # larger objects are closer
    obj = (
        distance
        - 0.25 * _profile(DEPTH_PROFILE[scene.cls], u, v)
        + RELIEF * (_pattern(scene.cls, u, v, scene.radius, rng) > 0)
    )
    z[win] += (alpha > 0.5) * (obj - z[win])  # depth has no anti-aliasing: a pixel is one surface or the other
    z[z > MAX_RANGE] = np.inf  # beyond the sensor's range: no return (disparity 0)
    d = DISPARITY_SCALE / z
    d = d * (1 + 0.02 * _gauss(rng, d.shape)) + 0.4 * _gauss(rng, d.shape)  # sensor noise
    d = np.round(d * 8) / 8  # sub-pixel disparity quantisation
    holes = _smooth_noise(rng, 10)[0] > rng.uniform(1.2, 1.8)  # missing regions (glare, occlusion shadows)
    holes |= rng.random(d.shape, dtype=np.float32) < DROPOUT
    d[holes] = 0.0
    return np.clip(d, 0, None)[None].astype(np.float32)


def render_thermal(scene: Scene, rng: np.random.Generator) -> np.ndarray:
    """Grey levels in [0, 1] (bindrt's thermal convention): ambient ~0.4, the object 0.45-1."""
    t = AMBIENT + 0.04 * _smooth_noise(rng, int(rng.integers(2, 6)))[0]
    axis = np.arange(SIZE, dtype=np.float32)
    for _ in range(int(rng.integers(2, 6))):  # warm and cold blobs (separable Gaussians)
        cx, cy, s = rng.uniform(0, SIZE), rng.uniform(0, SIZE), rng.uniform(6, 22)
        gx, gy = np.exp(-((axis - cx) ** 2) / (2 * s * s)), np.exp(-((axis - cy) ** 2) / (2 * s * s))
        t += rng.uniform(-0.05, 0.25) * np.outer(gy, gx)
    win, u, v = _local(scene.x, scene.y, scene.radius, scene.angle)
    alpha = _alpha(_sdf(scene.cls, u, v), scene.radius)
    r = np.sqrt(u * u + v * v)
    core = 0.55 + 0.25 * scene.temperature
    pattern = HEAT_PATTERN[scene.cls]
    heat = {
        0: np.full_like(u, core),
        1: core + 0.2 * np.clip(1 - r / 0.6, 0, 1),
        2: core - 0.15 + 0.3 * np.clip(r, 0, 1),
        3: core + 0.12 * v,
        4: core - 0.12 * u,
        5: core - 0.3 * np.clip(1 - r / 0.6, 0, 1),
    }[pattern] + HEAT_TEXTURE * _pattern(scene.cls, u, v, scene.radius, rng, stretch=1.5)
    t[win] += alpha * (heat - t[win])
    t = _blur(t, int(rng.integers(1, 3)))
    t = t + rng.normal(0, 0.02, size=(1, SIZE)).astype(np.float32)  # column stripes (fixed-pattern noise)
    t = t + 0.04 * _gauss(rng, t.shape)
    return np.clip(t, 0, 1)[None].astype(np.float32)


def render_audio(scene: Scene, rng: np.random.Generator) -> np.ndarray:
    """A 2 s, 16 kHz waveform through bindrt's Kaldi fbank -> (1, 128, 204) log-mel (reference layout)."""
    from bindrt.preprocess.audio import waveform_to_melspec

    sr, n = 16000, 32000
    t = np.arange(n, dtype=np.float32) / sr
    f0 = AUDIO_F0[scene.cls] * (1.25 - 0.5 * scene.size) * rng.uniform(0.97, 1.03)
    onset, length = rng.uniform(0, 0.5), rng.uniform(1.2, 1.5)
    local = np.clip((t - onset) / length, 0, 1)
    env = np.clip(np.minimum((t - onset) / 0.02, (onset + length - t) / 0.05), 0, 1)  # 20 ms attack, 50 ms release
    envelope = ENVELOPE[scene.cls]
    freq = np.full(n, f0, np.float64)
    if envelope == 1:  # pulsed
        env *= np.mod((t - onset) * rng.uniform(5, 7), 1.0) < 0.35
    elif envelope == 2:  # tremolo
        env *= 0.55 + 0.45 * np.sin(2 * np.pi * rng.uniform(9, 13) * t)
    elif envelope == 3:  # chirp up
        freq = f0 * 2 ** (1.2 * local.astype(np.float64) - 0.6)
    elif envelope == 4:  # chirp down
        freq = f0 * 2 ** (0.6 - 1.2 * local.astype(np.float64))
    cycles = np.cumsum(freq) / sr  # float64: phase stays exact over 32000 samples
    timbre = TIMBRE[scene.cls]
    harmonics = {0: [1], 1: [1, 3, 5, 7], 2: [1, 2, 3, 4, 5, 6]}[timbre]
    theta = (2 * np.pi * np.mod(cycles, 1.0)).astype(np.float32)  # integer harmonics need no further wrapping
    wave = sum(np.sin(h * theta + np.float32(rng.uniform(0, 2 * np.pi))) / h for h in harmonics if h * f0 < 7000)
    if timbre == 2:  # breathy: band noise an octave above the fundamental
        noise = np.fft.irfft(np.fft.rfft(_gauss(rng, (n,))) * _band(n, sr, 2 * f0, 4 * f0), n).astype(np.float32)
        wave = wave + 0.7 * noise / (noise.std() + 1e-9)
    x = (0.1 + 0.4 * scene.size) * rng.uniform(0.8, 1.25) * env * wave  # larger objects are louder
    # background: white + brown noise at a random level, and one distractor tone burst
    w = rng.uniform()
    brown = np.cumsum(_gauss(rng, (n,)))
    brown = (brown - np.linspace(brown[0], brown[-1], n, dtype=np.float32)) / (brown.std() + 1e-9)
    x += (w * _gauss(rng, (n,)) + (1 - w) * brown) * rng.uniform(0.05, 0.25)
    start, stop, df = int(rng.uniform(0, 1.6) * sr), 0, rng.uniform(100, 4000)
    stop = start + int(rng.uniform(0.1, 0.4) * sr)
    x[start:stop] += rng.uniform(0.05, 0.3) * np.sin(2 * np.pi * df * t[start:stop])
    return waveform_to_melspec(x[None], sr)


def _band(n: int, sr: int, lo: float, hi: float) -> np.ndarray:
    f = np.fft.rfftfreq(n, 1 / sr)
    return ((f >= lo) & (f <= hi)).astype(np.float64)


def _wave(kind: int, phase: np.ndarray) -> np.ndarray:
    frac = np.mod(phase, 1.0)
    if kind == 0:
        return np.sin(2 * np.pi * phase)
    if kind == 1:  # bounce: sharp impacts then free flight
        return np.exp(-frac / 0.06) * 2.0 - 0.3
    if kind == 2:
        return np.tanh(4 * np.sin(2 * np.pi * phase))
    return 2 * frac - 1  # saw


def render_imu(scene: Scene, rng: np.random.Generator) -> np.ndarray:
    """(6, 2000): 10 s at 200 Hz, accelerometer xyz (m/s^2) then gyroscope xyz (rad/s), body frame (bindrt's IMU convention)."""
    n, hz = 2000, 200.0
    t = np.arange(n) / hz
    f = MOTION_HZ[scene.cls] * (1.2 - 0.4 * scene.size) * rng.uniform(0.95, 1.05)
    wobble = 1 + 0.1 * np.sin(2 * np.pi * rng.uniform(0.05, 0.2) * t + rng.uniform(0, 6.3))  # speed variation
    phase = np.cumsum(f * wobble) / hz + rng.uniform()
    amp = (0.4 + 0.8 * scene.speed) * rng.uniform(0.8, 1.2)
    out = np.zeros((6, n))
    out[ACC_AXIS[scene.cls]] += amp * _wave(MOTION_WAVE[scene.cls], phase)
    out[3 + GYRO_AXIS[scene.cls]] += 1.5 * amp * _wave(0, phase + 0.25)
    # gravity under a random tilt
    tilt, heading = rng.uniform(0, 0.35), rng.uniform(0, 2 * np.pi)
    out[:3] += np.array([math.sin(tilt) * math.cos(heading), math.sin(tilt) * math.sin(heading), math.cos(tilt)])[
        :, None
    ]
    # sensor bias, slow drift, white noise, and a few random bumps
    out += rng.normal(0, 0.05, size=(6, 1))
    out += np.cumsum(rng.normal(0, 0.004, size=(6, n)), axis=1)
    out += rng.normal(0, 0.06, size=(6, n))
    for _ in range(int(rng.integers(0, 4))):
        at, ch = int(rng.integers(0, n - 20)), int(rng.integers(6))
        out[ch, at : at + 20] += rng.normal(0, 1.0) * np.hanning(20)
    out[:3] *= 9.81  # g -> m/s^2
    return out.astype(np.float32)


def _article(text: str) -> str:
    return re.sub(r"\ba ([aeiou])", r"an \1", text)


_PREFIXES = (
    "",
    "",
    "",
    "a photo of ",
    "an image of ",
    "a picture of ",
    "a rendering of ",
    "a view of ",
    "a snapshot of ",
)
_FRAMES = (
    "{pre}{np}{where}",
    "{pre}{np}{where}",
    "there is {np}{where}",
    "{pre}{np}, seen from the front",
    "this is {np}{where}",
)
_SIZE_WORDS = {
    "small": ("small", "little", "tiny"),
    "medium": ("medium", "medium-sized"),
    "large": ("large", "big", "huge"),
}
#: How often a caption mentions each attribute besides the class (always named). Class-heavy
#: captions matter: when most captions name the colour, both towers first align on colour
#: (the easiest cue) and class alignment starts hundreds of steps later.
P_COLOUR, P_SIZE, P_WHERE = 0.3, 0.85, 0.1


def caption(scene: Scene, rng: np.random.Generator) -> str:
    """A varied English caption: always the class, sometimes its colour, size and position."""
    words = []
    if rng.uniform() < P_SIZE:
        words.append(str(rng.choice(_SIZE_WORDS[scene.size_word])))
    if rng.uniform() < P_COLOUR:
        words.append(COLOUR_NAMES[scene.colour])
    noun = " ".join(["a", *words, CLASSES[scene.cls]])
    where = ""
    if rng.uniform() < P_WHERE:
        h = "left" if scene.x < SIZE * 0.4 else "right" if scene.x > SIZE * 0.6 else ""
        vpos = "top" if scene.y < SIZE * 0.4 else "bottom" if scene.y > SIZE * 0.6 else ""
        where = f" at the {vpos or h}" if (vpos or h) else " in the middle"
    frame = _FRAMES[int(rng.integers(len(_FRAMES)))]
    text = frame.format(pre=_PREFIXES[int(rng.integers(len(_PREFIXES)))], np=noun, where=where)
    return _article(" ".join(text.split()))


def render_text(scene: Scene, rng: np.random.Generator) -> np.ndarray:
    from bindrt.preprocess.text import tokenize

    return tokenize([caption(scene, rng)])[0]


RENDERERS = {
    "vision": render_vision,
    "text": render_text,
    "audio": render_audio,
    "depth": render_depth,
    "thermal": render_thermal,
    "imu": render_imu,
}
