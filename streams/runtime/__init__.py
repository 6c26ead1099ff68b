"""Base room of the registry's processes: what both sides (``streams`` and ``consumers``) use.

Owns the process-wide Prometheus metrics (:mod:`streams.runtime.metrics`). May import only the
standard library and third-party packages: nothing of ``schemas``, ``streams`` or
``consumers``, so that any module may import it.
"""
