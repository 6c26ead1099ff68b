"""Kafka administration and the adapters over Kafka and Faust internals.

Owns the registry's topics and their replication (:mod:`streams.kafka.topics`), ACLs and SCRAM
users (:mod:`streams.kafka.security`), the few private aiokafka and faust-streaming calls the
registry relies on (:mod:`streams.kafka.internals`, :mod:`streams.kafka.faust_internals`, pinned
by ``tests/unit/project/test_third_party_internals.py``), Faust's commit rule
(:mod:`streams.kafka.faust_commits`) and the read-then-commit helpers of plain aiokafka consumers
(:mod:`streams.kafka.read_commit`). May import ``schemas`` and :mod:`streams.settings`; nothing
else of ``streams`` (the rooms above stand on it) and nothing of ``consumers`` (checked by
``lint-imports``).
"""
