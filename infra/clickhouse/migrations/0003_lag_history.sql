-- Consumer-lag samples written by the lag monitor (consumers/lag/history.py), one row per
-- (group, topic, partition) per sample. committed_offset = -1 means no commit yet;
-- lag_seconds = nan means the oldest unconsumed record could not be read in time.
-- Kept 30 days for post-mortems; the dashboard's live view is the monitor's memory.
CREATE TABLE IF NOT EXISTS lag_history
(
    sampled_at DateTime64(3, 'UTC'),
    group_id LowCardinality(String),
    topic LowCardinality(String),
    partition UInt16,
    committed_offset Int64,
    end_offset Int64,
    lag Int64,
    lag_seconds Float64,
    status LowCardinality(String)
)
ENGINE = MergeTree
ORDER BY (group_id, topic, partition, sampled_at)
TTL toDateTime(sampled_at) + INTERVAL 30 DAY;
