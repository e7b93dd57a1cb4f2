"""The bundled studies: each paper's reproduction in its own folder, a plugin like a user's package.

Each study registers its kinds, figures, experiments and docs-numbers specs through the public
``sgdlab.register_*`` calls, from the module that its ``sgdlab.plugins`` entry point names
(pyproject.toml). Nothing in the framework imports a study; a study may use another study's kinds
by name in its experiment files (related's ``replacement-diag`` trains the diagonal net).
"""
