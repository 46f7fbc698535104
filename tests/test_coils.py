"""Coil maps by ESPIRiT (sigpy) with fastMRI's 8% / 4% centres, and fastMRI's metrics against
a hand computation (scikit-image is not installed: the reference is written out here)."""

import numpy as np
import pytest
import torch

from ccdf import metrics, simulate
from ccdf.operators import MRI
from ccdf.operators.coils import (
    CalibrationError,
    calibration_width,
    check_calibration,
    coil_images,
    espirit_maps,
    rss,
    sense_combine,
)
from ccdf.solve.readers import kspace_to_ours


def _fastmri_cols(w, fraction, accel, seed=0):
    """fastMRI's RandomMaskFunc layout: round(w fraction) centre columns at
    [(w - c + 1) // 2, + c), and random outer columns up to w / accel in all (centred)."""
    c = round(w * fraction)
    cols = np.zeros(w, bool)
    cols[(w - c + 1) // 2:(w - c + 1) // 2 + c] = True
    outer = np.flatnonzero(~cols)
    cols[np.random.default_rng(seed).choice(outer, round(w / accel) - c, replace=False)] = True
    return cols, c


@pytest.mark.parametrize("w,fraction,accel", [(128, 0.08, 4), (200, 0.04, 8)])
def test_espirit_with_fastmri_centres(w, fraction, accel):
    """8% of 128 columns (10 lines) at x4 and 4% of 200 (8 lines) at x8: the maps cover the
    object, combine the fully sampled coil images to the truth, and CG-SENSE with them beats
    the zero-filled RSS."""
    h = 32
    yy, xx = np.mgrid[:h, :w]
    mag = (((xx - w / 2) / (0.2 * w)) ** 2 + ((yy - h / 2) / (0.4 * h)) ** 2 <= 1) * \
        (0.5 + 0.5 * (xx > w / 2))
    img = simulate.complex_slices(mag[None].astype(np.float32), seed=1)
    k, _ = simulate.multicoil_kspace(img, ncoil=8)
    cols, c = _fastmri_cols(w, fraction, accel)
    mask = np.broadcast_to(cols, (h, w))
    assert calibration_width(mask) == c == check_calibration(mask)
    km = k[0] * cols
    maps = espirit_maps(km, mask)
    obj = mag > 0
    assert maps.shape == (8, h, w) and (np.abs(maps).sum(0) > 0)[obj].all()
    combined = sense_combine(coil_images(k[0]), maps)
    assert np.linalg.norm(np.abs(combined)[obj] - mag[obj]) / np.linalg.norm(mag[obj]) < 0.02
    op = MRI(torch.from_numpy(np.fft.ifftshift(mask).copy()), (1, h, w), complex_image=True,
             coils=torch.from_numpy(maps).to(torch.complex128), cg_iters=30)
    sense = op.A_pinv(torch.from_numpy(kspace_to_ours(km.astype(np.complex128)))[None])
    err_sense = np.linalg.norm(np.abs(sense[0, 0].numpy())[obj] - mag[obj])
    err_zf = np.linalg.norm(rss(coil_images(km))[obj] - mag[obj])
    assert err_sense < 0.8 * err_zf


def test_espirit_on_a_coarse_grid_for_large_images():
    """192 x 192: ESPIRiT runs on the centre 96 x 96 of k-space (the same field of view) and
    the maps are interpolated back; they still combine the coil images to the truth."""
    n = 192
    yy, xx = np.mgrid[:n, :n] / (n - 1) * 2 - 1
    mag = ((xx / 0.7) ** 2 + (yy / 0.8) ** 2 <= 1) * (0.4 + 0.6 * (np.abs(xx) < 0.3))
    img = simulate.complex_slices(mag[None].astype(np.float32), seed=2)
    k, _ = simulate.multicoil_kspace(img, ncoil=8)
    cols, _ = _fastmri_cols(n, 0.08, 4)
    maps = espirit_maps(k[0] * cols, np.broadcast_to(cols, (n, n)))      # default: coarse = 2
    obj = mag > 0
    assert maps.shape == (8, n, n) and (np.abs(maps).sum(0) > 0)[obj].all()
    np.testing.assert_allclose((np.abs(maps) ** 2).sum(0)[obj], 1, atol=1e-5)
    combined = sense_combine(coil_images(k[0]), maps)
    assert np.linalg.norm(np.abs(combined)[obj] - mag[obj]) / np.linalg.norm(mag[obj]) < 0.02


def test_too_few_centre_lines_are_refused():
    cols, c = _fastmri_cols(128, 0.04, 8)  # 5 lines
    with pytest.raises(CalibrationError, match="needs at least 8 fully sampled centre lines "
                                               "to estimate coil maps, this mask has 5"):
        espirit_maps(np.ones((4, 32, 128), np.complex64) * cols, np.broadcast_to(cols, (32, 128)))


def test_calibration_width_centring():
    for w in (24, 25, 368):
        for c in (c for c in (8, 9, 29) if c < w):
            cols = np.zeros(w, bool)
            cols[(w - c + 1) // 2:(w - c + 1) // 2 + c] = True   # fastMRI's centre block
            assert calibration_width(np.broadcast_to(cols, (40, w))) in (c - 1, c)
    assert calibration_width(np.ones((10, 30), bool)) == 10       # limited by the readout


# ------------------------------------------------------------------ fastMRI's metrics
def _ssim_by_hand(x, y, data_range):
    """scikit-image's structural_similarity at its defaults, pixel by pixel: 7 x 7 windows,
    sample (ddof = 1) variances, K1 = 0.01, K2 = 0.03, the mean over the pixels at least 3
    from the border."""
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    vals = []
    for i in range(3, x.shape[0] - 3):
        for j in range(3, x.shape[1] - 3):
            a, b = x[i - 3:i + 4, j - 3:j + 4].ravel(), y[i - 3:i + 4, j - 3:j + 4].ravel()
            ma, mb = a.mean(), b.mean()
            va, vb = a.var(ddof=1), b.var(ddof=1)
            cab = ((a - ma) * (b - mb)).sum() / (a.size - 1)
            num = (2 * ma * mb + c1) * (2 * cab + c2)
            vals.append(num / ((ma**2 + mb**2 + c1) * (va + vb + c2)))
    return float(np.mean(vals))


def test_fastmri_metrics_against_a_hand_computation():
    rng = np.random.default_rng(0)
    gt = rng.random((3, 12, 10)) * np.array([1.0, 2.0, 0.5])[:, None, None]
    pred = gt + 0.1 * rng.standard_normal(gt.shape)
    maxval = gt.max()                                   # the VOLUME's max, for every slice
    assert metrics.fastmri_nmse(gt, pred) == pytest.approx(
        ((gt - pred) ** 2).sum() / (gt**2).sum(), rel=1e-12)
    assert metrics.fastmri_psnr(gt, pred) == pytest.approx(
        10 * np.log10(maxval**2 / ((gt - pred) ** 2).mean()), rel=1e-12)
    hand = np.mean([_ssim_by_hand(gt[s], pred[s], maxval) for s in range(3)])
    assert metrics.fastmri_ssim(gt, pred) == pytest.approx(hand, rel=1e-10)
    assert metrics.fastmri_ssim(gt, gt) == pytest.approx(1.0)
    # fastMRI's evaluate crops both to (W, W) of the target's width first
    v = metrics.fastmri_volume(gt, pred)
    sq = (slice(None), slice(1, 11), slice(None))
    assert v["ssim"] == pytest.approx(np.mean([_ssim_by_hand(gt[sq][s], pred[sq][s], gt[sq].max())
                                               for s in range(3)]), rel=1e-10)
    assert v["psnr"] == pytest.approx(metrics.fastmri_psnr(gt[sq], pred[sq]))
    both = metrics.fastmri_mean([v, metrics.fastmri_volume(gt, gt)])
    assert both["ssim"] == pytest.approx((v["ssim"] + 1) / 2)     # the mean over volumes
    assert both["nmse"] == pytest.approx(v["nmse"] / 2)


def test_center_crop_as_fastmri():
    a = np.arange(7 * 9).reshape(7, 9)
    np.testing.assert_array_equal(metrics.center_crop(a, (4, 4)), a[1:5, 2:6])
    t = torch.arange(2 * 6 * 6).reshape(2, 6, 6)
    assert torch.equal(metrics.center_crop(t, (3, 5)), t[:, 1:4, 0:5])
    with pytest.raises(ValueError, match="cannot crop"):
        metrics.center_crop(a, (8, 4))


def test_first_cuts_per_slice_maps():
    """``MRI.first(k)``: the operator of the first k slices, for per-slice coil maps."""
    g = torch.Generator().manual_seed(0)
    maps = torch.randn(3, 4, 16, 16, generator=g, dtype=torch.complex64)
    op = MRI(torch.ones(16, 16, dtype=torch.bool), (1, 16, 16), complex_image=True, coils=maps)
    x = torch.randn(3, 1, 16, 16, generator=g, dtype=torch.complex64)
    sub = op.first(2)
    assert torch.allclose(sub.A(x[:2]), op.A(x)[:2]) and op.coils.shape[0] == 3
    shared = MRI(torch.ones(16, 16, dtype=torch.bool), (1, 16, 16), complex_image=True,
                 coils=maps[0])
    assert shared.first(1) is shared
