"""Edge of Stability in a plain PyTorch loop, measured by sgdlab.Monitor.

Full-batch GD on Cohen et al.'s chebyshev-4 task (20 points, label T_4(x); sgdlab's `chebyshev`
data kind), a 1 -> 100 tanh -> 1 network (Xavier-normal gain 1.9 on the first layer) and the
loss (f - y)^2 / 2 averaged over the points, so the GD edge is exactly 2/eta. The monitor
measures the top-2 Hessian eigenvalues every 100 steps: at eta = 0.07 sharpness starts at
0.73-0.79 x 2/eta (seeds 0, 1), rises to 2/eta by step ~7000 and hovers there (0.95-1.05 x 2/eta);
at eta = 0.05 it is still rising at step 15000 (tests/test_monitor_examples.py).

    python examples/monitor_chebyshev.py --lr 0.07 --steps 15000 --out runs/eos-monitor
    sgdlab plot runs/eos-monitor        # sharpness against 2/eta, train loss
"""

import argparse

import torch
from torch import nn

import sgdlab
from sgdlab.metrics.probes import ProbeSettings
from sgdlab.studies.eos.data import Chebyshev

FIRST_LAYER_STD = 0.26737  # Xavier normal, gain 1.9: 1.9 * sqrt(2 / (1 + 100))
SECOND_LAYER_STD = 0.057735  # nn.Linear's default variance 1 / (3 * 100), as a Gaussian


def build_model(seed: int) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    model = nn.Sequential(nn.Linear(1, 100), nn.Tanh(), nn.Linear(100, 1, bias=False)).double()
    with torch.no_grad():
        model[0].weight.normal_(0.0, FIRST_LAYER_STD, generator=g)
        model[0].bias.uniform_(-1.0, 1.0, generator=g)  # nn.Linear's default for fan_in 1
        model[2].weight.normal_(0.0, SECOND_LAYER_STD, generator=g)
    return model


def half_mse(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return 0.5 * ((out.squeeze(-1) - y) ** 2).mean()


def train(model: nn.Module, lr: float, steps: int, *, every: int = 100, tol: float = 1e-4, out=None):
    """GD for `steps` steps; the monitor measures the state after t updates, t = 0, every, ..."""
    data = Chebyshev(k=4, n=20).build()
    x, y = data.x_train, data.y_train
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    monitor = sgdlab.Monitor(model, half_mse, (x, y), opt, metrics=["sharpness", "threshold"], every=every,
                             out=out, name=f"chebyshev-gd-lr{lr:g}", settings=ProbeSettings(k=2, tol=tol))  # top-2: lambda_2 too
    for step in range(steps + 1):
        if monitor.step(step) and step % (20 * every) == 0:
            print(monitor.last)
        if step < steps:
            opt.zero_grad()
            half_mse(model(x), y).backward()
            opt.step()
    monitor.close()
    return monitor


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lr", type=float, default=0.07)
    ap.add_argument("--steps", type=int, default=15000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    train(build_model(a.seed), a.lr, a.steps, out=a.out)
