-- Rows that ClickHouse refused (a refusal of the data, not an outage), set aside by the sink
-- (consumers/sink/loop.py) so that one bad row cannot stall the pipeline. One row per refused source
-- row: the error as ClickHouse reported it (code -1 / name empty when the driver refused the
-- value while encoding it and there is no server code), the Kafka coordinates of the record the
-- row came from, and the row itself rendered as JSON (a borrower value that is not a pseudonym
-- is redacted, so a raw national id never lands here either). Keyed by table, source
-- coordinates and row text: a replayed bisection writes the same keys and collapses (FINAL).
CREATE TABLE IF NOT EXISTS sink_dead_letters (
    table_name LowCardinality(String),
    error_code Int32,
    error_name LowCardinality(String),
    message String,
    source_topic LowCardinality(String),
    source_partition UInt16,
    source_offset Int64,
    row String,
    dead_lettered_at DateTime64(3, 'UTC')
) ENGINE = ReplacingMergeTree
ORDER BY (table_name, source_topic, source_partition, source_offset, row)
SETTINGS non_replicated_deduplication_window = 1000;

-- Defence in depth for pseudonymisation: ClickHouse itself refuses a borrower value that is not
-- a pseudonym (32 lowercase hex characters), so a raw national id can never be stored in these
-- tables even if a bug upstream let one through. The sink dead-letters such a row (redacted).
ALTER TABLE admitted_events
    ADD CONSTRAINT IF NOT EXISTS borrower_is_pseudonym CHECK match(borrower, '^[0-9a-f]{32}$');
ALTER TABLE borrower_daily
    ADD CONSTRAINT IF NOT EXISTS borrower_is_pseudonym CHECK match(borrower, '^[0-9a-f]{32}$');
ALTER TABLE borrower_hourly
    ADD CONSTRAINT IF NOT EXISTS borrower_is_pseudonym CHECK match(borrower, '^[0-9a-f]{32}$');
ALTER TABLE consent_audit
    ADD CONSTRAINT IF NOT EXISTS borrower_is_pseudonym CHECK match(borrower, '^[0-9a-f]{32}$');
