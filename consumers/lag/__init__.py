"""Consumer-lag monitoring: Burrow-style status rules, the sampling monitor, its history.

Owns the lag samples, their status and gauges. May import ``streams`` base modules (settings,
:mod:`streams.runtime`); nothing of ``consumers.api``, which reads it.
"""
