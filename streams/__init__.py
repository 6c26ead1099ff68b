"""The Faust stream processor and the lender side of the registry.

Data path: lender publisher -> ``lenders.<L>.loans`` -> admission agent (validate, bind lender,
pseudonymise, de-duplicate, consent) -> ``registry.admitted`` -> aggregation agent (event-time
buckets per borrower) -> ``registry.activity`` -> ClickHouse sink (``consumers``).

Owns the stream side, the settings, the lender side and the ``registry`` CLI, in rooms:
:mod:`streams.settings` (the only reader of the environment), :mod:`streams.runtime` (metrics,
Redis, progress bars), :mod:`streams.kafka` (topics, ACLs, Kafka and Faust adapters),
:mod:`streams.intake` (bulk lender intake), :mod:`streams.consent` (ingest, store, barrier,
agent), the Faust app and its agents' logic (:mod:`streams.app`, ``admission``,
``aggregation``, ``buckets``, ``alerts``, ``dedup``, ``state_cache``), :mod:`streams.lender`
(the lender's own tools) and :mod:`streams.cli` (the ``registry`` command and the worker's
composition). May import ``schemas``; not ``consumers`` (checked by ``lint-imports``), except
the composition modules :mod:`streams.cli.worker` and :mod:`streams.cli.api` that wire the
readers in.
"""
