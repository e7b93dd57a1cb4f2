"""Callbacks that run ``sgdlab.Monitor`` inside other training frameworks.

Each module imports its framework, so import the one you use (optional extras):

* :mod:`sgdlab.frontends.integrations.lightning`: ``MonitorCallback`` for PyTorch Lightning
  (``pip install -e ".[lightning]"``);
* :mod:`sgdlab.frontends.integrations.hf`: ``MonitorCallback`` for the Hugging Face ``Trainer``
  (``pip install -e ".[hf]"``).

Both build the Monitor when training starts (the framework's model and optimizer exist then),
measure the initialisation and then the state after every optimizer step that is due (the step
counter is the framework's global step), and close it (summary.json) when training ends.
"""
