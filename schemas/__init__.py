"""The contract every lender shares: Avro schemas, the codec, validation and reason codes."""
