"""The Faust stream processor and the lender side of the registry.

Data path: lender publisher -> ``lenders.<L>.loans`` -> admission agent (validate, bind lender,
pseudonymise, de-duplicate, consent) -> ``registry.admitted`` -> aggregation agent (event-time
buckets per borrower) -> ``registry.activity`` -> ClickHouse sink (``consumers``).

Owns the stream side, the settings, the lender side and the ``registry`` CLI. May import
``schemas``; not ``consumers`` (checked by ``lint-imports``), except the composition modules
:mod:`streams.worker` and :mod:`streams.api_cli` that wire the readers in.
"""
