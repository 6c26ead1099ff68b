"""The contract every lender shares: Avro schemas, the codec, validation and reason codes.

Owns the record shapes, their encoding and the rules a record must pass. May import only the
standard library and third-party packages: nothing of ``streams`` or ``consumers`` (checked by
``lint-imports``), so that a lender can use it alone.
"""
