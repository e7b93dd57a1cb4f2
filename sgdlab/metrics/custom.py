"""Metrics registered by users (``sgdlab.register_metric``): ``fn(model, params, data) -> (R,)``.

A registered metric is a :class:`~sgdlab.metrics.registry.MetricSpec` whose ``compute`` is ``fn``,
in the one registry of metric specs, and a Monitor probe of the same name
(:func:`sgdlab.metrics.module_view.metric_probe`), so that both the engine and ``sgdlab.Monitor``
log it when named:

* the engine (``metrics.names``): called at every evaluation step with the batched model, the
  parameters of a group of runs (a dict of ``(R, ...)`` tensors) and the dataset, under
  ``torch.no_grad()``; it must return one value per run (a tensor or array of shape ``(R,)``);
* the Monitor (``metrics=[...]``): the same function with R = 1 on views of the user's module and
  measurement set (:mod:`sgdlab.metrics.module_view`).
"""

from __future__ import annotations

from collections.abc import Callable

from sgdlab.metrics.registry import METRIC_SPECS, MetricSpec

__all__ = ["add_metric"]


def add_metric(name: str, fn: Callable, *, description: str = "", label: str = "",
               log_scale: bool = False) -> MetricSpec:
    """Register ``fn`` as metric ``name`` for the engine and the Monitor; returns its spec."""
    from sgdlab.core.registry import same_definition
    from sgdlab.metrics.module_view import metric_probe
    from sgdlab.metrics.probes import PROBES

    old = METRIC_SPECS.get_or_none(name)
    if old is not None and old.compute is fn:
        return old  # the same function again (a module imported twice)
    if old is not None and old.compute is not None and same_definition(old.compute, fn):
        METRIC_SPECS.remove(name)  # its module imported again (a fresh function object): replaced
        PROBES._items.pop(name, None)
        old = None
    if name in PROBES or old is not None and old.name == name:
        from sgdlab.core.errors import ConfigError
        from sgdlab.core.registry import source_of

        owner = (source_of(old.compute) if old is not None and old.compute is not None
                 else "sgdlab (built-in metric)" if old is not None else "sgdlab (Monitor probe)")
        raise ConfigError(f"metric {name!r} registered twice: {source_of(fn)} gives it, but it belongs to "
                          f"{owner}; choose another name")
    doc = description or (fn.__doc__ or "").strip().split("\n")[0] or f"user metric {name!r}"
    spec = METRIC_SPECS.add_spec(MetricSpec(name, doc, label=label, log_scale=log_scale, source="user", compute=fn))
    PROBES.add(name, metric_probe(name, fn, doc))
    return spec
