"""Project-wide checks: import contracts, type check, error family, settings and README, the
third-party internals the adapters rely on, and the bad-input properties of every reader."""
