"""The reference's temporal clip sampler, shared by audio (3 clips) and video (5 clips)."""

from __future__ import annotations

from fractions import Fraction


def clip_timepoints(duration: float, clip_seconds: float, num_clips: int) -> list[tuple[Fraction, Fraction]]:
    """pytorchvideo ``ConstantClipsPerVideoSampler`` as the reference drives it, in exact fractions.

    ``max_start = max(d - clip, 0)``, ``step = max_start / num_clips``; clip i spans
    ``[i*step, i*step + clip)`` seconds. A float duration enters as its exact binary
    value (``Fraction(float)``), as in pytorchvideo; a file shorter than one clip
    gives ``num_clips`` identical clips starting at 0.
    """
    max_start = Fraction(max(duration - clip_seconds, 0))
    step = max_start / num_clips
    return [(step * i, step * i + Fraction(clip_seconds)) for i in range(num_clips)]
