"""Write simulated fastMRI files (no raw k-space ships offline) from the brains that do.

Each slice: a magnitude image (MNI152 at 1 mm: the held-out axial band, the validation margin
slices, or the out-of-distribution sagittal/coronal slices and a Shepp-Logan phantom; or
your own .npy stack) fitted into a SIZE x SIZE field of view, times a smooth random phase,
seen by COILS sigpy birdcage coils, with the readout (rows) oversampled OVERSAMPLE times as
fastMRI's 640 of 640 x 368.  Files hold fastMRI's datasets and attrs: ``kspace``
(slices, coils, H, W) complex64 (or (slices, H, W) for --coils 1), ``reconstruction_rss``
(``reconstruction_esc`` single-coil) centre-cropped, ``ismrmrd_header``, attrs acquisition,
max, norm, patient_id.  With --accel the files are test-split style instead: k-space zero off
a ``mask`` (W,), attrs acceleration and num_low_frequency, no target.  See ``ccdf.simulate``.

Examples:
  python scripts/simulate_fastmri.py --source heldout --out data/mc8 --size 256
  python scripts/simulate_fastmri.py --source ood --out data/mc8_test --accel 4 --pattern uniform1d
  ccdf solve --task mri --input data/mc8 --out out/mc8 --consistency cg --batch-size 4
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from ccdf import io, simulate


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--source", default="heldout",
                   help="heldout | val | ood (MNI152 at 1 mm, fitted into --size), a data spec "
                   "such as mri:heldout256-complex (the bench's sets, their own size and phase), "
                   "or a .npy stack (S, H, W) of magnitudes in [0, 1] or complex slices")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--size", type=int, default=256, help="field of view (pixels) before "
                   "readout oversampling")
    p.add_argument("--coils", type=int, default=8, help="birdcage coils (1: single-coil)")
    p.add_argument("--oversample", type=int, default=2, help="readout oversampling factor")
    p.add_argument("--slices-per-volume", type=int, default=4)
    p.add_argument("--noise", type=float, default=0.0,
                   help="k-space noise std relative to the image maximum")
    p.add_argument("--accel", type=float, default=None,
                   help="write test-split files undersampled at this acceleration")
    p.add_argument("--pattern", default="uniform1d", help="mask pattern for --accel")
    p.add_argument("--acs", type=int, default=None, help="centre lines for --accel")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    try:
        if a.source in simulate.SOURCES:
            mag = simulate.magnitude_slices(a.source, a.size)
            img = simulate.complex_slices(mag, a.seed)
        elif ":" in a.source:
            from ccdf import datasets

            x = datasets.load(a.source)[:, 0].numpy()
            img = x if np.iscomplexobj(x) else simulate.complex_slices(x, a.seed)
        else:
            arr = io.read_npy(a.source)
            if arr.ndim != 3:
                raise ValueError(f"{a.source}: expected a stack (S, H, W), got {arr.shape}")
            arr = np.stack([simulate.fit(np.abs(s), a.size) * np.exp(1j * np.angle(s))
                            if np.iscomplexobj(s) else simulate.fit(s, a.size) for s in arr])
            img = arr if np.iscomplexobj(arr) else simulate.complex_slices(arr, a.seed)
        cols = None
        if a.accel:
            from ccdf.operators import make_operator

            w = img.shape[-1]
            m = make_operator("mri", (1, a.oversample * img.shape[-2], w), pattern=a.pattern,
                              accel=a.accel, acs=a.acs, seed=a.seed).mask
            cols = np.fft.fftshift(m[0].numpy())
        out = Path(a.out)
        n = max(1, a.slices_per_volume)
        tag = a.source if a.source in simulate.SOURCES else \
            Path(a.source.replace(":", "_")).stem
        for v, start in enumerate(range(0, len(img), n)):
            name = f"{tag}_{v:02d}"
            data, attrs = simulate.volume(img[start:start + n], a.coils, a.oversample, a.noise,
                                          mask_cols=cols, name=name, seed=a.seed + v,
                                          acceleration=a.accel)
            io.write_h5_file(out / f"{name}.h5", data, attrs)
            print(f"{out / name}.h5: kspace {data['kspace'].shape}")
    except (ValueError, OSError) as e:
        print(f"simulate_fastmri: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
