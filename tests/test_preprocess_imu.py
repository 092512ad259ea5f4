"""IMU preprocessing against bindrt's documented convention (layout, centre crop / pad, linear resampling)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from bindrt.errors import InputError, MediaDecodeError
from bindrt.preprocess import preprocess, preprocess_imu, preprocess_imus


def signal(n: int, rate: float = 200.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(6, n) slow random sinusoids sampled at ``rate``; also returns their frequencies and phases."""
    rng = np.random.default_rng(seed)
    freqs, phases = rng.uniform(0.2, 2.0, 6), rng.uniform(0, 2 * np.pi, 6)
    t = np.arange(n) / rate
    return np.sin(2 * np.pi * freqs[:, None] * t + phases[:, None]).astype(np.float32), freqs, phases


def test_exact_length_both_layouts() -> None:
    x, _, _ = signal(2000)
    got = preprocess_imu(x)
    assert got.shape == (6, 2000) and got.dtype == np.float32
    np.testing.assert_array_equal(got, x)
    np.testing.assert_array_equal(preprocess_imu(x.T.copy()), x)


def test_long_is_centre_cropped_short_is_zero_padded() -> None:
    x, _, _ = signal(2500, seed=1)
    np.testing.assert_array_equal(preprocess_imu(x), x[:, 250:2250])
    y, _, _ = signal(1500, seed=2)
    got = preprocess_imu(y.T)
    np.testing.assert_array_equal(got[:, :1500], y)
    assert (got[:, 1500:] == 0).all()


def test_resampling_from_another_rate() -> None:
    x, freqs, phases = signal(1000, rate=100.0, seed=3)  # 10 s at 100 Hz
    got = preprocess_imu(x, sample_rate=100.0)
    t = np.arange(1999) / 200.0  # 200 Hz grid inside the 10 s span: 1999 samples, then one zero of padding
    want = np.sin(2 * np.pi * freqs[:, None] * t + phases[:, None])
    assert np.abs(got[:, :1999] - want).max() < 3e-3  # linear interpolation error of <= 2 Hz sines at 100 Hz
    assert (got[:, 1999] == 0).all()
    ramp = np.tile(np.arange(50, dtype=np.float32), (6, 1)) * 0.1
    np.testing.assert_allclose(
        preprocess_imu(ramp, sample_rate=50, target_rate=200)[:, :197],
        np.tile(np.arange(197) / 4 * 0.1, (6, 1)),
        atol=1e-6,
    )
    np.testing.assert_array_equal(preprocess_imu(x, sample_rate=200.0)[:, :1000], x)


def test_files_csv_txt_npy(tmp_path: Path) -> None:
    x, _, _ = signal(2000, seed=4)
    csv = tmp_path / "imu.csv"
    header = "acc_x,acc_y,acc_z,gyro_x,gyro_y,gyro_z\n"
    csv.write_text(header + "\n".join(",".join(f"{v:.9g}" for v in row) for row in x.T))
    txt = "\n".join(" ".join(f"{v:.9g}" for v in row) for row in x.T).encode()
    npy = tmp_path / "imu.npy"
    np.save(npy, x.T)
    buf = io.BytesIO()
    np.save(buf, x)
    batch = preprocess("imu", [csv, txt, npy, buf.getvalue(), x])
    assert batch.shape == (5, 6, 2000)
    for b in batch:
        np.testing.assert_allclose(b, x, atol=1e-6)
    assert preprocess_imus([x]).shape == (1, 6, 2000)


# ------------------------------------------------------------------ bad input
def _check(exc: pytest.ExceptionInfo, *words: str) -> None:
    msg = str(exc.value)
    assert "[imu item 1]" in msg, msg
    for w in words:
        assert w in msg, msg


def test_bad_arrays() -> None:
    good, _, _ = signal(2000, seed=5)
    nan, inf = good.copy(), good.copy()
    nan[2, 3], inf[4, 5] = np.nan, -np.inf
    cases = [
        (nan, "NaN"),
        (inf, "Inf"),
        (good[:5], "shape (5, 2000)"),
        (good[None], "shape (1, 6, 2000)"),
        (good[0], "shape (2000,)"),
        (good.astype(str), "dtype <U"),
    ]
    for arr, word in cases:
        with pytest.raises(InputError) as e:
            preprocess_imus([good, arr])
        _check(e, word, "expected", "(6, N) or (N, 6) array")


def test_bad_files_and_options(tmp_path: Path) -> None:
    good, _, _ = signal(2000, seed=6)
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text("a,b,c\nx,y,z\n1,2,oops\n")
    with pytest.raises(MediaDecodeError) as e:
        preprocess_imus([good, bad_csv])
    _check(e, "bad.csv", "expected a CSV/text table")
    with pytest.raises(InputError) as e:
        preprocess_imus([good, tmp_path / "none.csv"])
    _check(e, "file not found")
    with pytest.raises(InputError) as e:
        preprocess_imus([good, {"acc": good}])
    _check(e, "unsupported item type dict")
    for rate in (0, -5.0, float("nan")):
        with pytest.raises(InputError) as e:
            preprocess_imus([good, good], sample_rate=rate)
        assert "expected a positive number of Hz" in str(e.value)
    with pytest.raises(InputError, match=r"\[imu\] expected at least one item"):
        preprocess_imus([])
