"""Front ends over the workflows: the CLI, the public `register_*` API, framework integrations and
the docs-numbers pipeline."""
