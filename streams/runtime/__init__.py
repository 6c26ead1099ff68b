"""Base room of the registry's processes: what both sides (``streams`` and ``consumers``) use.

Owns the process-wide Prometheus metrics (:mod:`streams.runtime.metrics`), the Redis
connection and its retry rule (:mod:`streams.runtime.redis_client`) and the progress bars of
long commands (:mod:`streams.runtime.progress`). May import :mod:`streams.settings` (and so
``schemas``) and third-party packages; nothing else of ``streams`` and nothing of ``consumers``
(checked by ``lint-imports``), so that any module may import it.
"""
