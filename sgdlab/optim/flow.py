"""Gradient flow d theta / dt = -grad L(theta) of any BatchedModel, by an ODE integrator.

Not a training engine: the continuous-time reference that GD with step eta is compared with
(GD's t-th iterate sits near flow time eta * t while eta is small). Integrated with
``scipy.integrate.solve_ivp`` on the full-batch training loss, one run at a time, with the
gradient from the model's own ``loss_and_grad`` (float64).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

# Integrator and tolerances: DOP853 (8th-order Runge-Kutta) keeps the local error per step below
# atol + rtol * |theta|; with these values the flow's limit is accurate to ~1e-9 (checked against
# the closed-form limit of the depth-2 linear net in tests/test_related_linear2.py).
GF_METHOD = "DOP853"
GF_RTOL = 1e-10
GF_ATOL = 1e-12


@dataclass
class FlowResult:
    """theta at the requested times of each run: name -> (R, len(times), ...) float64 tensors."""

    times: np.ndarray
    params: dict[str, torch.Tensor]
    loss: np.ndarray  # (R, len(times)) full-batch training loss along the flow
    nfev: np.ndarray  # (R,) gradient evaluations used

    def final(self) -> dict[str, torch.Tensor]:
        """Parameters at the last time, (R, ...) each: the flow's limit when t_end is long enough."""
        return {k: v[:, -1] for k, v in self.params.items()}


def gradient_flow(model, params: dict[str, torch.Tensor], data, t_end: float, times=None,
                  rtol: float = GF_RTOL, atol: float = GF_ATOL, method: str = GF_METHOD) -> FlowResult:
    """Integrate gradient flow on the training loss from each run's ``params`` (R, ...) to ``t_end``.

    times: flow times at which to report theta (default: t_end only), sorted in [0, t_end].
    Raises RuntimeError if the integrator fails (e.g. the flow blows up).
    """
    # imported here: scipy.integrate would otherwise add to every figure's start
    from scipy.integrate import solve_ivp

    names = list(params)
    shapes = [tuple(params[k].shape[1:]) for k in names]
    sizes = [int(np.prod(s)) for s in shapes]
    x = data.x_train.to(torch.float64)
    y = data.y_train.to(torch.float64)
    times = np.array([t_end] if times is None else times, dtype=np.float64)
    if times.ndim != 1 or np.any(np.diff(times) < 0) or times[0] < 0 or times[-1] > t_end:
        raise ValueError("times must be sorted and inside [0, t_end]")

    def unflat(z: np.ndarray) -> dict[str, torch.Tensor]:
        out, i = {}, 0
        for k, s, n in zip(names, shapes, sizes):
            out[k] = torch.as_tensor(z[i:i + n]).reshape((1,) + s)
            i += n
        return out

    def rhs(_t, z):
        _, g = model.loss_and_grad(unflat(z), x, y)
        return -np.concatenate([g[k].reshape(-1).numpy() for k in names])

    R = next(iter(params.values())).shape[0]
    traj, losses, nfev = [], [], []
    for r in range(R):
        z0 = np.concatenate([params[k][r].to(torch.float64).reshape(-1).numpy() for k in names])
        sol = solve_ivp(rhs, (0.0, t_end), z0, method=method, t_eval=times, rtol=rtol, atol=atol)
        if not sol.success:
            raise RuntimeError(f"gradient flow of run {r} failed: {sol.message}")
        traj.append(sol.y.T)  # (len(times), p)
        losses.append([float(model.loss(unflat(z), x, y)[0]) for z in sol.y.T])
        nfev.append(sol.nfev)
    traj = np.stack(traj)
    out, i = {}, 0
    for k, s, n in zip(names, shapes, sizes):
        out[k] = torch.as_tensor(traj[:, :, i:i + n]).reshape((R, len(times)) + s)
        i += n
    return FlowResult(times, out, np.array(losses), np.array(nfev))
