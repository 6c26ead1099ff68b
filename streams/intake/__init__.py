"""Bulk intake: the lender loan topics, read in bulk, turned into validated batch records.

Owns: reading ``lenders.<L>.loans`` with one aiokafka consumer per worker (group
``<app id>-intake``, pattern subscription), size / decode / validate / lender binding /
pseudonymisation (:mod:`streams.intake.validate`), dead letters for what fails, and the
batch records on ``registry.validated`` that the stream agent works on
(:mod:`streams.intake.service`). May import ``schemas`` and ``streams`` base modules
(settings, :mod:`streams.runtime`, :mod:`streams.kafka`, :mod:`streams.consent`); nothing of
``consumers``.
"""
