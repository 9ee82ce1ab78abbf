"""The Python API: start and feed runs (``init``, ``log``, ...), read them (``Client``).

Layer 5: may import the store, capture, config and everything below; never
the CLI or the server. The module-level functions in ``fluent`` are thin
wrappers over ``ActiveRun`` and ``Client``.
"""
