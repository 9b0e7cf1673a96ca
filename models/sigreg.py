"""SIGReg: Sketched Isotropic Gaussian Regularizer (LeWM's anti-collapse term).

Project the latents on random unit directions and test each 1-D projection against N(0, 1)
with the Epps-Pulley statistic (as the LeWM paper defines it):

    EP(h_1..h_N) = N * integral_{-T}^{T} |phi_N(t) - exp(-t^2/2)|^2 exp(-t^2/2) dt,
    phi_N(t) = mean_n exp(i t h_n)   (the empirical characteristic function)

with T = 3, evaluated by the trapezoid rule on `knots` = 17 points of [0, T]; the integrand
is even in t (phi_N(-t) is the conjugate of phi_N(t) and the target is real), so the integral
over [-T, T] is twice the one over [0, T]. |phi_N - g|^2 = (mean cos(t h) - g)^2 +
(mean sin(t h))^2. SIGReg averages EP over the directions and over the leading (time) axis.
"""

from __future__ import annotations

import torch


def trapezoid_knots(knots: int = 17, t_max: float = 3.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Knots t_k on [0, t_max] and weights w_k with sum_k w_k f(t_k) ~ integral_{-t_max}^{t_max}
    of an even f (trapezoid rule on [0, t_max], doubled)."""
    if knots < 2:
        raise ValueError(f"knots must be >= 2, got {knots}")
    t = torch.linspace(0.0, t_max, knots)
    w = torch.full((knots,), t_max / (knots - 1))
    w[0] = w[-1] = w[0] / 2
    return t, 2 * w


def epps_pulley(h: torch.Tensor, knots: int = 17, t_max: float = 3.0) -> torch.Tensor:
    """Epps-Pulley statistic of samples h (..., N, M) along N, for each of M columns -> (..., M)."""
    t, w = trapezoid_knots(knots, t_max)
    t, w = t.to(h), w.to(h)
    gauss = torch.exp(-0.5 * t * t)  # characteristic function of N(0, 1), also the weight
    ht = h.unsqueeze(-1) * t  # (..., N, M, K)
    re = torch.cos(ht).mean(-3) - gauss
    im = torch.sin(ht).mean(-3)
    return h.shape[-2] * ((re * re + im * im) * gauss * w).sum(-1)


def random_directions(
    dim: int, num: int, generator: torch.Generator | None = None, device=None
) -> torch.Tensor:
    """(dim, num) matrix of unit-norm columns, uniform on the sphere."""
    a = torch.randn(dim, num, generator=generator, device=device)
    return a / a.norm(dim=0, keepdim=True)


def sigreg(
    z: torch.Tensor,
    num_directions: int = 1024,
    knots: int = 17,
    t_max: float = 3.0,
    generator: torch.Generator | None = None,
    directions: torch.Tensor | None = None,
) -> torch.Tensor:
    """SIGReg of latents z (..., N, D): statistics over the batch axis N, averaged over the
    leading axes (time steps) and over `num_directions` fresh random directions (or the given
    `directions`, (D, M))."""
    if directions is None:
        directions = random_directions(z.shape[-1], num_directions, generator, z.device)
    return epps_pulley(z @ directions.to(z), knots, t_max).mean()
