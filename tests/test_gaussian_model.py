"""The stationary Gaussian image model: whiten/colour are inverses, and whitening its own samples gives
white noise (the x_T that exact DDIM inversion would give under this model)."""
import numpy as np
import pytest

from rdec.export.gaussian_model import StationaryGaussian


def _smooth_blocks(n, seed):
    """Correlated colour blocks in about [-1, 1]: blurred noise with a shared component across channels."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, 1, 64, 64)) + 0.5 * rng.standard_normal((n, 3, 64, 64))
    f = np.fft.fft2(z)
    fy, fx = np.meshgrid(np.fft.fftfreq(64), np.fft.fftfreq(64), indexing="ij")
    f /= 1.0 + 40.0 * np.hypot(fy, fx)
    b = np.real(np.fft.ifft2(f))
    return 0.5 * b / b.std() + np.array([0.1, -0.2, 0.0])[None, :, None, None]


def test_whiten_and_color_are_inverses():
    g = StationaryGaussian().add(_smooth_blocks(40, 0)).fit()
    x = _smooth_blocks(5, 1)
    assert np.abs(g.color(g.whiten(x)) - x).max() < 1e-10
    assert g.whiten(x).shape == x.shape


def test_whitened_samples_are_white():
    train = _smooth_blocks(200, 2)
    g = StationaryGaussian()
    for part in np.split(train, 4):  # accumulating in batches is the same as one fit
        g.add(part)
    g.fit()
    x = _smooth_blocks(50, 3)
    lag = lambda a: np.corrcoef(a[..., :, :-1].ravel(), a[..., :, 1:].ravel())[0, 1]
    assert lag(x) > 0.5
    w = g.whiten(x)
    assert abs(lag(w)) < 0.05
    assert 0.85 < w.std() < 1.15 and abs(w.mean()) < 0.05
    cc = np.corrcoef(w.transpose(1, 0, 2, 3).reshape(3, -1))
    assert np.abs(cc - np.eye(3)).max() < 0.1  # colours decorrelated too


def test_bad_input():
    with pytest.raises(ValueError):
        StationaryGaussian().add(np.zeros((2, 3, 32, 32)))
    with pytest.raises(ValueError):
        StationaryGaussian().fit()
