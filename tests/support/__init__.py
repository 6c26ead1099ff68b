"""Helpers shared by the tests and the benchmark suite (``bench/``), imported as
``tests.support.<module>`` from the repository root (pytest and ``python -m bench.run`` both
put it on ``sys.path``):

- :mod:`~tests.support.services`: real Kafka, Redis and ClickHouse for a run (testcontainers,
  or the project's own ``infra/`` scripts and embedded chDB), a three-node local cluster,
  free ports and the environment that points a subprocess at a deployment;
- :mod:`~tests.support.pipeline`: consumer-group lag per stage, waiting until the pipeline
  drained, publishing by hand, reading topics and ClickHouse back;
- :mod:`~tests.support.chdb_dump`: the ClickHouse dump script ``pipeline`` runs in a subprocess;
- :mod:`~tests.support.oracle`: the expected per-borrower buckets of a ground truth;
- :mod:`~tests.support.faults`: committed offsets, group status and the oracle comparison the
  fault-injection tests share;
- :mod:`~tests.support.openapi_check`: risk-API answers checked against the OpenAPI document;
- :mod:`~tests.support.promql`: metric names read from PromQL and from a scrape.

Nothing here is a mock, and nothing here is imported by the product (``schemas``, ``streams``,
``consumers``).
"""
