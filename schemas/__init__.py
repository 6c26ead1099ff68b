"""The contract every lender shares: Avro schemas, the codec, validation and reason codes.

Owns the record shapes, their encoding and the rules a record must pass, and what the stored
values mean: a local day and a UTC hour bucket (:mod:`schemas.calendar`), the ``borrower``
pseudonym and its partition (:mod:`schemas.pseudonym`). May import only the
standard library and third-party packages: nothing of ``streams`` or ``consumers`` (checked by
``lint-imports``), so that a lender can use it alone.
"""
