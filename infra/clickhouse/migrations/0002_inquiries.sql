-- Who asked about whom: one row per risk API frequency query, pseudonymised. Inquiries are
-- themselves a risk signal (many institutions asking about one borrower in a short time), and
-- the audit trail of every access to borrower data. Point-read by the risk API: small granules.
CREATE TABLE IF NOT EXISTS inquiries (
    inquired_at DateTime64(3, 'UTC'),
    institution LowCardinality(String),
    borrower String,
    purpose LowCardinality(String),
    window_days UInt16,
    request_id String
) ENGINE = MergeTree
ORDER BY (borrower, inquired_at)
SETTINGS index_granularity = 256;
