"""isoclip.studies.gradient_study: the radial residual against a hand-made radial and
non-radial term, the trajectory against a direct computation at one checkpoint."""

from __future__ import annotations

import pytest
import torch

from isoclip.method.operator import effective_rank, psi_image, svd
from isoclip.method.projectors import Projectors
from isoclip.studies.gradient_study import radial_residual


def test_radial_residual_is_zero_for_a_pulled_back_multiple_of_the_embedding():
    g = torch.Generator().manual_seed(0)
    P = Projectors(W_i=torch.randn(6, 9, generator=g, dtype=torch.float64),
                   W_t=torch.randn(6, 5, generator=g, dtype=torch.float64))
    f = torch.randn(4, 9, generator=g, dtype=torch.float64)
    scale = torch.tensor([[0.5], [-2.0], [3.0], [1e-3]], dtype=torch.float64)
    radial = scale * ((f @ P.W_i.T) @ P.W_i)
    assert radial_residual(P, f, radial).max() < 1e-12
    other = torch.randn(4, 9, generator=g, dtype=torch.float64)
    r = radial_residual(P, f, other)
    # an independent reference: the residual of the least-squares fit, row by row
    for i in range(4):
        v = (f[i] @ P.W_i.T) @ P.W_i
        lam = torch.dot(other[i], v) / torch.dot(v, v)
        ref = (other[i] - lam * v).norm() / other[i].norm()
        assert float(r[i]) == pytest.approx(float(ref), rel=1e-12)
    assert effective_rank(svd(psi_image(P)).S) > 0
