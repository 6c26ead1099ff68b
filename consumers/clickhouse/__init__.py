"""ClickHouse access: one client factory, ordered migrations, typed errors."""
