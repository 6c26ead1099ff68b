-- One row per data-subject erasure (POST /api/v1/erasure). It proves that an erasure happened
-- without keeping whom it was about: borrower_hash is sha256(pseudonym), so neither the national
-- id nor the pseudonym is stored; an operator who is handed the id again can recompute the hash.
CREATE TABLE IF NOT EXISTS erasures (
    erased_at DateTime64(3, 'UTC'),
    request_id String,
    borrower_hash String,
    institution LowCardinality(String),
    tables Array(String),
    rows_before UInt64
) ENGINE = MergeTree
ORDER BY erased_at;
