"""The four models of the MNIST-1D benchmark (Greydanus & Kobak, ICML 2024) as ``nn.Module`` s
with the block-output protocol of :mod:`sgdlab.models.cifar.base`.

Architectures as in the benchmark repository (greydanus/mnist1d, ``notebooks/models.py``; sizes
are its defaults as used by its classification notebook). Inputs ``x (N, L)``, ``L = 40``
standardised points; outputs logits ``(N, 10)``:

* ``logistic``: ``W x + b`` (410 parameters).
* ``mlp``: ``h1 = relu(W1 x + b1)``, ``h2 = h1 + relu(W2 h1 + b2)`` (a residual second layer),
  logits ``W3 h2 + b3``; hidden width 100 (15,210 parameters).
* ``cnn``: three 1-D convolutions of 25 channels (kernel 5 stride 2 padding 1, then kernel 3
  stride 2 padding 1 twice: lengths 40 -> 19 -> 10 -> 5), ReLU after each, flattened 125
  features -> linear (5,210 parameters).
* ``gru``: a bidirectional GRU with 6 hidden units per direction over the 40 points (one input
  feature per step, zero initial state), all 40 x 12 outputs flattened -> linear (5,134
  parameters). Written out in tensor ops (the cell of ``torch.nn.GRU``: r, z gates and candidate
  n = tanh(W_in x + b_in + r * (W_hn h + b_hn)), h' = (1 - z) n + z h) so that
  ``torch.func.vmap`` batches it over runs; ``nn.GRU``'s fused kernel has no batching rule.

Blocks (``return_blocks=True``): the post-ReLU features whose sparsity the study measures --
mlp ``block1 = h1 (N, 100)``, ``block2 = relu(W2 h1 + b2) (N, 100)``; cnn ``block1..3 =
(N, 25, 19) / (N, 25, 10) / (N, 25, 5)``. The logistic model and the GRU (no ReLU) have none.

Initialisation: PyTorch's defaults for these layers (Linear and Conv1d: uniform with bound
``1/sqrt(fan_in)`` for weights and biases; GRU: every tensor uniform with bound ``1/sqrt(H)``),
drawn from the given ``torch.Generator``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["NETS", "BenchmarkCNN", "BenchmarkGRU", "BenchmarkMLP", "Logistic", "build_net"]

SEQ_LEN = 40  # points of an MNIST-1D sequence (package default final_seq_length)
MLP_HIDDEN = 100  # MLPBase default hidden_size
CNN_CHANNELS = 25  # ConvBase default channels
CNN_KERNELS = (5, 3, 3)  # kernel sizes of the three convolutions (stride 2, padding 1 each)
CNN_STRIDE, CNN_PADDING = 2, 1
GRU_HIDDEN = 6  # GRUBase default hidden_size per direction (bidirectional)


def _uniform_(t: torch.Tensor, bound: float, g: torch.Generator | None) -> None:
    with torch.no_grad():
        t.uniform_(-bound, bound, generator=g)


def _default_init(m: nn.Module, g: torch.Generator | None) -> None:
    """PyTorch's default init of Linear / Conv1d, redrawn from ``g`` (reproducible per run)."""
    for mod in m.modules():
        if isinstance(mod, (nn.Linear, nn.Conv1d)):
            fan_in = mod.weight[0].numel()
            _uniform_(mod.weight, 1.0 / math.sqrt(fan_in), g)
            if mod.bias is not None:
                _uniform_(mod.bias, 1.0 / math.sqrt(fan_in), g)


class Logistic(nn.Module):
    """Multinomial logistic regression ``(N, L) -> (N, k)``."""

    def __init__(self, seq_len: int = SEQ_LEN, num_classes: int = 10, generator=None):
        super().__init__()
        self.linear = nn.Linear(seq_len, num_classes)
        _default_init(self, generator)

    def forward(self, x, return_blocks: bool = False):
        out = self.linear(x.flatten(1))
        return (out, {}) if return_blocks else out


class BenchmarkMLP(nn.Module):
    """The benchmark's MLP with a residual second layer (module doc)."""

    def __init__(self, seq_len: int = SEQ_LEN, num_classes: int = 10, hidden: int = MLP_HIDDEN, generator=None):
        super().__init__()
        self.linear1 = nn.Linear(seq_len, hidden)
        self.linear2 = nn.Linear(hidden, hidden)
        self.linear3 = nn.Linear(hidden, num_classes)
        self.relu1, self.relu2 = nn.ReLU(), nn.ReLU()  # modules: sgdlab.Monitor finds them by type
        _default_init(self, generator)

    def forward(self, x, return_blocks: bool = False):
        h1 = self.relu1(self.linear1(x.flatten(1)))
        a2 = self.relu2(self.linear2(h1))
        out = self.linear3(h1 + a2)
        return (out, {"block1": h1, "block2": a2}) if return_blocks else out


def conv_lengths(seq_len: int) -> list[int]:
    """Output lengths of the three convolutions: floor((L + 2p - k) / s) + 1 each."""
    out, n = [], seq_len
    for k in CNN_KERNELS:
        n = (n + 2 * CNN_PADDING - k) // CNN_STRIDE + 1
        out.append(n)
    return out


class BenchmarkCNN(nn.Module):
    """The benchmark's 1-D CNN (module doc)."""

    def __init__(self, seq_len: int = SEQ_LEN, num_classes: int = 10, channels: int = CNN_CHANNELS, generator=None):
        super().__init__()
        k1, k2, k3 = CNN_KERNELS
        self.conv1 = nn.Conv1d(1, channels, k1, stride=CNN_STRIDE, padding=CNN_PADDING)
        self.conv2 = nn.Conv1d(channels, channels, k2, stride=CNN_STRIDE, padding=CNN_PADDING)
        self.conv3 = nn.Conv1d(channels, channels, k3, stride=CNN_STRIDE, padding=CNN_PADDING)
        self.linear = nn.Linear(channels * conv_lengths(seq_len)[-1], num_classes)
        self.relu1, self.relu2, self.relu3 = nn.ReLU(), nn.ReLU(), nn.ReLU()  # found by sgdlab.Monitor
        _default_init(self, generator)

    def forward(self, x, return_blocks: bool = False):
        h1 = self.relu1(self.conv1(x.reshape(x.shape[0], 1, -1)))
        h2 = self.relu2(self.conv2(h1))
        h3 = self.relu3(self.conv3(h2))
        out = self.linear(h3.flatten(1))
        return (out, {"block1": h1, "block2": h2, "block3": h3}) if return_blocks else out


class GRUDirection(nn.Module):
    """One direction of ``torch.nn.GRU`` (input size 1): parameters named and shaped as its
    ``weight_ih_l0 (3H, 1)``, ``weight_hh_l0 (3H, H)``, ``bias_ih_l0``, ``bias_hh_l0 (3H,)``
    (gate order r, z, n)."""

    def __init__(self, hidden: int):
        super().__init__()
        self.hidden = hidden
        self.weight_ih = nn.Parameter(torch.empty(3 * hidden, 1))
        self.weight_hh = nn.Parameter(torch.empty(3 * hidden, hidden))
        self.bias_ih = nn.Parameter(torch.empty(3 * hidden))
        self.bias_hh = nn.Parameter(torch.empty(3 * hidden))

    def forward(self, x: torch.Tensor, reverse: bool) -> torch.Tensor:
        """x (N, L) -> hidden states (N, L, H), in input order."""
        H = self.hidden
        gi = x[..., None] * self.weight_ih[:, 0] + self.bias_ih  # (N, L, 3H): the input part of every step
        h = x.new_zeros(x.shape[0], H)
        outs = []
        steps = range(x.shape[1] - 1, -1, -1) if reverse else range(x.shape[1])
        for t in steps:
            gh = h @ self.weight_hh.T + self.bias_hh
            r = torch.sigmoid(gi[:, t, :H] + gh[:, :H])
            z = torch.sigmoid(gi[:, t, H:2 * H] + gh[:, H:2 * H])
            n = torch.tanh(gi[:, t, 2 * H:] + r * gh[:, 2 * H:])
            h = (1 - z) * n + z * h
            outs.append(h)
        if reverse:
            outs.reverse()
        return torch.stack(outs, 1)


class BenchmarkGRU(nn.Module):
    """The benchmark's bidirectional GRU classifier (module doc)."""

    def __init__(self, seq_len: int = SEQ_LEN, num_classes: int = 10, hidden: int = GRU_HIDDEN, generator=None):
        super().__init__()
        self.forward_gru = GRUDirection(hidden)
        self.backward_gru = GRUDirection(hidden)
        bound = 1.0 / math.sqrt(hidden)
        for p in [*self.forward_gru.parameters(), *self.backward_gru.parameters()]:
            _uniform_(p, bound, generator)
        self.linear = nn.Linear(2 * hidden * seq_len, num_classes)
        _default_init(self.linear, generator)

    def forward(self, x, return_blocks: bool = False):
        x = x.flatten(1)
        h = torch.cat([self.forward_gru(x, False), self.backward_gru(x, True)], -1)  # (N, L, 2H)
        out = self.linear(h.flatten(1))
        return (out, {}) if return_blocks else out


# name -> (class, name of its width argument, default width): the kinds' ``width = 0`` is the default.
NETS = {
    "logistic": (Logistic, None, 0),
    "mlp": (BenchmarkMLP, "hidden", MLP_HIDDEN),
    "cnn": (BenchmarkCNN, "channels", CNN_CHANNELS),
    "gru": (BenchmarkGRU, "hidden", GRU_HIDDEN),
}


def build_net(name: str, seq_len: int = SEQ_LEN, num_classes: int = 10, width: int = 0,
              generator: torch.Generator | None = None) -> nn.Module:
    """The benchmark model ``name`` (see ``NETS``) for sequences of ``seq_len`` points;
    ``width = 0`` is the benchmark's size."""
    cls, arg, default = NETS[name]
    kw = {} if arg is None else {arg: width or default}
    return cls(seq_len=seq_len, num_classes=num_classes, generator=generator, **kw)
