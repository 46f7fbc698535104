"""Published zero-shot diffusion solvers, as baselines for CCDF at matched network evaluations.

Three solvers, driven by the same trained network through the denoiser contract
(``models.denoiser.evaluate``) on the model's own grid ``t_i = i/N`` (``x_i = a_i x0 + b_i z``,
VP or VE), in the model's data space [-1, 1]; ``run_peer`` takes and returns images in [0, 1]
like ``reconstruct``.  Write ``s_i = b_i / a_i`` for the noise level of ``x_i / a_i = x0 + s_i z``
(the "variance exploding" coordinates DDRM and DiffPIR are written in; ``s_0 = 0``).  Each
returns ``(x, nfe)``, nfe = the number of (batched) network calls = steps.

* ``ddrm`` -- Kawar, Elad, Ermon & Song, "Denoising Diffusion Restoration Models", NeurIPS 2022
  (defaults ``eta = 0.85``, ``eta_b = 1``, 20 steps).  On the coefficients ``xbar = V^T x / a``
  of the SVD ``A = U S V^T`` (``spectral``: the operator's ``svd()``), with
  ``ybar = S^+ U^T y = V^T A^+ y`` and per-coefficient noise ``sigma_y / s_k``.  Start:
  ``xbar_N ~ N(ybar, s_N^2 - sigma_y^2/s_k^2)`` where ``s_k s_N > sigma_y``, ``N(0, s_N^2)``
  elsewhere.  Step i -> i-1, with ``x0bar, epsbar`` the denoiser's x0 and eps at ``x_i``
  (``epsbar = (xbar_i - x0bar) / s_i``), c = sqrt(1-eta^2):
  unmeasured (``s_k = 0``): ``x0bar + c s_{i-1} epsbar + eta s_{i-1} z``;
  ``s_{i-1} < sigma_y/s_k``: ``x0bar + c s_{i-1} (ybar - x0bar) / (sigma_y/s_k) + eta s_{i-1} z``;
  ``s_{i-1} >= sigma_y/s_k``: ``(1 - eta_b) x0bar + eta_b ybar
  + sqrt(s_{i-1}^2 - eta_b^2 sigma_y^2/s_k^2) z``.
  The noise model is the paper's: y = A x + sigma_y n, n white in the measurement space (real
  and imaginary parts each N(0, 1) for k-space).
* ``dps`` -- Chung, Kim, Mccann, Klasky & Ye, "Diffusion Posterior Sampling for General Noisy
  Inverse Problems", ICLR 2023 (Algorithm 1, 1000 steps): the DDPM ancestral step
  (``samplers.Ancestral``, posterior variance; the SMLD step on a VE model, the paper's VE
  variant), then ``x_{i-1} -= zeta grad_{x_i} ||y - A x0_hat(x_i)||``: the paper's
  ``zeta_i grad ||y - A x0_hat||^2`` with ``zeta_i = zeta' / ||y - A x0_hat||``, the factor 2
  folded into ``zeta`` as in the reference code (which differentiates the norm itself).
  ``zeta``: the operator's ``peer_defaults["dps"]["zeta"]``: 0.3 for SR and deblurring, 0.5 for
  inpainting (the reference configs); MRI (not in the paper) takes the inpainting value, its
  operator being a mask of an orthogonal transform too.  The
  norm is per batch item (the reference takes one norm over the whole batch).  Each step also
  runs one backward pass through the network, which NFE does not count.
* ``diffpir`` -- Zhu, Zhang, Liang, Cao, Wen, Timofte & Van Gool, "Denoising Diffusion Models for
  Plug-and-Play Image Restoration", CVPRW 2023 (Algorithm 1, 100 steps): ``x0`` from the
  denoiser, the data step ``x0_hat = argmin_x ||y - A x||^2 + rho_i ||x - x0||^2`` (the HQS data
  subproblem) with ``rho_i = lam sigma_n^2 / s_i^2``, then
  ``x_{i-1} = a_{i-1} x0_hat + b_{i-1} (sqrt(1 - zeta) eps_hat + sqrt(zeta) z)``,
  ``eps_hat = (x_i - a_i x0_hat) / b_i``, from ``x_N = b_N z``; a step rule of
  ``samplers.solve`` (``DiffPIRStep``).  ``sigma_n`` is measured on the [0, 1] image scale
  (``sigma_y / 2`` in model space) and floored at 1e-3 for noiseless data, as in the reference
  code, so published ``lam`` keep their meaning.  Defaults ``lam = 7``, ``zeta = 0.3``, for
  deblurring too (see ``operators.Blur.peer_defaults``: the reference code's deblurring
  config, lam = 1, zeta = 0.1, diverges on the model's uniform grid).  The
  data step is closed form in the SVD basis (``data_prox``), conjugate gradients otherwise.

Where the reference code departs from the papers, the papers are followed: DDRM's code takes
the noiseless case ``s_{i-1} = sigma_y / s_k = 0`` of the last step into the ``<`` branch
(returning x0bar), the paper into ``>=`` (returning ybar, so A x = y exactly); DiffPIR's code
skips the data step at the last step and returns the denoiser's x0, Algorithm 1 does not.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

from ..reconstruction import check_model_input, model_space
from ._common import check_sigma, check_y
from ._ddrm import ddrm
from ._diffpir import DiffPIRStep, diffpir
from ._dps import dps
from ._svd import Spectral, data_prox, spectral

__all__ = ["Spectral", "spectral", "data_prox", "ddrm", "dps", "diffpir", "DiffPIRStep", "PEERS",
           "Peer", "run_peer"]


class Peer(NamedTuple):
    run: Callable       # run(model, operator, y, *, steps, generator, sigma_y, **options)
    steps: int          # default number of steps (= NFE)
    reference: str


PEERS = {
    "ddrm": Peer(ddrm, 20, "Kawar et al., Denoising Diffusion Restoration Models, NeurIPS 2022"),
    "dps": Peer(dps, 1000, "Chung et al., Diffusion Posterior Sampling, ICLR 2023"),
    "diffpir": Peer(diffpir, 100, "Zhu et al., Denoising Diffusion Models for Plug-and-Play "
                                  "Image Restoration, CVPRW 2023"),
}


def run_peer(name: str, model, operator, y01: Tensor, *, steps: int | None = None,
             generator: torch.Generator | None = None, sigma_y: float = 0.0,
             **options) -> tuple[Tensor, int]:
    """Run peer ``name`` on a measurement y01 of images in [0, 1]; returns (x01, nfe).

    As in ``reconstruct``: the measurement, its noise level and the result map between images
    and the model's space (``reconstruction.model_space``: the data range [lo, hi], or a complex
    prior's scale); the result is clamped to the operator's ``value_range``.  ``options`` go to
    the peer (ddrm: eta, eta_b; dps: zeta; diffpir: lam, zeta, sigma_floor), over the
    operator's own published settings for the peer (``operator.peer_defaults[name]``, e.g.
    deblurring's).
    """
    if name not in PEERS:
        raise ValueError(f"unknown peer {name!r}; choose one of {', '.join(PEERS)}")
    sigma_y = check_sigma(sigma_y)
    check_y(y01)
    template = operator.A_pinv(y01)
    ones = torch.ones_like(template.real if template.is_complex() else template)
    check_model_input(model, ones)
    peer = PEERS[name]
    options = {**operator.peer_defaults.get(name, {}), **options}
    y_m, _, sigma_m, back = model_space(model, operator, y01, None, sigma_y)
    x_m, nfe = peer.run(model, operator, y_m, steps=peer.steps if steps is None else steps,
                        generator=generator, sigma_y=sigma_m, **options)
    return operator.clamp(back(x_m)), nfe
