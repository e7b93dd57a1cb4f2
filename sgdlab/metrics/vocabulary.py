"""The bundled metric specs (fields of :class:`sgdlab.metrics.registry.MetricSpec`) and the
deprecated names they replace; plain data, loaded into ``METRIC_SPECS`` once.

Grouped by who logs them. The studies' own model families (the diagonal net, the two-layer and
linear models) describe their metrics in their folders, through ``sgdlab.register_metric_spec``. Labels are plain Unicode (no mathtext: it is slow to draw). A name with
``{placeholders}`` is a family (``{i}``: digits; ``{layer}``: a layer or block name: ``block{l}``
for the ``l``-th hidden layer of ``relu_mlp`` and of the image MLP, the network's block names for
deep nets, module names in the Monitor).
"""

from __future__ import annotations

__all__ = ["ALIASES", "BUILTIN"]


def _spec(name: str, description: str, label: str = "", log: bool = False, source: str = "model",
          table: int = 0) -> dict:
    return {"name": name, "description": description, "label": label, "log_scale": log, "source": source,
            "table": table}


BUILTIN: list[dict] = [
    # ---------------------------------------------------------------- every model family
    _spec("train_loss", "mean per-example training loss of the model (the loss it is trained on)", "train loss",
          log=True, table=1),
    _spec("test_loss", "mean per-example loss on the held-out set (only with finite test labels)", "test loss",
          log=True, table=2),
    _spec("train_error", "fraction of misclassified training examples (classifiers)", "train error"),
    _spec("test_error", "fraction of misclassified held-out examples (classifiers)", "test error", table=3),
    _spec("jacobian_rank", "rank of phi = d f(x_i) / d theta over probe inputs: singular values > "
          "rank_rtol x the largest (metrics.thresholds.rank_rtol; Monitor: settings.rank_rtol)", "rank φ(X)",
          source="model, monitor", table=4),
    # ---------------------------------------------------------------- features per layer (MLP, deep nets, Monitor)
    _spec("{layer}_sparsity", "merged feature sparsity coefficient of the layer's activations A (n x units): "
          "|corr| > sparsity_tau merged (sgdlab.metrics.sparsity)", "{layer} feature sparsity",
          source="model, monitor"),
    _spec("{layer}_active", "raw fraction of positive activations, mean_ij 1[A_ij > 0] over all units",
          "{layer} active fraction", source="model, monitor"),
    _spec("{layer}_merged", "number of neurons merged into another (|corr| > sparsity_tau)", "{layer} merged"),
    _spec("{layer}_dead", "number of never-active neurons (A_ij <= 0 for every example)", "{layer} dead"),
    # ---------------------------------------------------------------- curvature (tracking and Monitor)
    _spec("sharpness", "lambda_1, the top Hessian eigenvalue of the training loss (Lanczos; dense for small "
          "two-layer nets)", "sharpness λ₁", source="curvature", table=8),
    _spec("hessian_eig{i}", "lambda_i, the i-th largest Hessian eigenvalue", "λ{i}", source="curvature"),
    _spec("hessian_cond", "lambda_1 / lambda_k of the tracked eigenvalues", "λ₁/λ_k", source="curvature"),
    _spec("curvature_hvps", "Hessian-vector products of the eigenvalue measurement", "Hessian-vector products",
          source="curvature"),
    _spec("dead_fraction", "fraction of hidden units with mean |activation| < 1e-3 over the measured examples "
          "(Jastrzebski et al. 2018)", "dead fraction", source="curvature"),
    _spec("batch_sharpness", "E_B[g_B^T H_B g_B / |g_B|^2] over batches of the run's size", "batch sharpness",
          source="curvature", table=9),
    _spec("batch_sharpness_ratio", "E_B[g_B^T H_B g_B] / E_B[|g_B|^2]", "batch sharpness (ratio)",
          source="curvature"),
    _spec("minibs", "E_B[lambda_max(H_B)]", "MiniBS", source="curvature"),
    _spec("gni", "E_B[g_B^T H g_B] / |grad L|^2 (gradient-noise interaction)", "GNI", source="curvature"),
    _spec("step_sharpness", "E_B[g_B^T H g_B / |g_B|^2]", "step sharpness", source="curvature"),
    _spec("batch_draws", "batches the Monte Carlo batch estimates used", "batches drawn", source="monitor"),
    # ---------------------------------------------------------------- Monitor: the optimizer
    _spec("lr", "the optimizer's step size now", "η", source="monitor"),
    _spec("momentum", "the optimizer's momentum now", "momentum", source="monitor"),
    _spec("threshold", "2 / lr minus SGD's coupled weight decay (GD's edge of stability)", "2/η", source="monitor"),
    _spec("threshold_momentum", "(2 + 2 mu) / lr (heavy ball; Nesterov (2 + 2 mu)/(lr (1 + 2 mu))) minus the "
          "coupled weight decay", "(2+2μ)/η", source="monitor"),
    # ---------------------------------------------------------------- the engine
    _spec("phase", "index of the phase in effect (multi-phase arms)", "phase", source="engine"),
]

# (old name, new name): names of one quantity that differed between model families.
ALIASES: list[tuple[str, str]] = [
    ("feature_sparsity_l{i}", "block{i}_sparsity"),
    ("positive_fraction_l{i}", "block{i}_active"),
    ("merged_l{i}", "block{i}_merged"),
    ("dead_l{i}", "block{i}_dead"),
]
