"""The ``mnist1d_net`` model kind: the MNIST-1D benchmark's models (:mod:`.nets`) on sgdlab's
deep-network path (engine, vmap-batched seeds, checkpoints, curvature tracking).

    model = {kind = "mnist1d_net", name = "cnn"}                 # logistic | mlp | cnn | gru
    model = {kind = "mnist1d_net", name = "mlp", width = 200, loss = "mse"}

Every key of ``deep_net`` (loss, evaluation sizes, vectorize, autocast, compile) applies; ``name``
picks one of :data:`.nets.NETS` and ``width`` its hidden size / channels (0 = the benchmark's).
Registered through :func:`sgdlab.register_model` as a plugin would; no torch at import time.
"""

from __future__ import annotations

from dataclasses import dataclass

from sgdlab.core.config import check
from sgdlab.core.errors import choices_message
from sgdlab.frontends.register import register_model
from sgdlab.models.deep import DeepNetConfig

NET_NAMES = ("logistic", "mlp", "cnn", "gru")  # the keys of nets.NETS (kept here: nets imports torch)


@register_model("mnist1d_net")
@dataclass(frozen=True)
class Mnist1dNetConfig(DeepNetConfig):
    """One of the MNIST-1D benchmark's models (``name``: logistic, mlp, cnn, gru)."""

    name: str = "cnn"
    eval_train: int = 4000  # all MNIST-1D training sequences
    sparsity_examples: int = 4000
    bn_examples: int = 4000

    def _check_name(self) -> None:
        check(self.name in NET_NAMES, "model.name: " + choices_message("MNIST-1D model", self.name, NET_NAMES))
        check(self.options is None, "mnist1d_net takes no options (width sets the hidden size / channels)")

    def build(self, data):
        from sgdlab.studies.mnist1d.nets import build_net

        check(data.x_train.dim() == 2, f"mnist1d_net needs sequences x (n, L), got shape {tuple(data.x_train.shape)}")
        return self.module_model(data, lambda g, k, _c, shape: build_net(self.name, shape[-1], k, self.width, g))
