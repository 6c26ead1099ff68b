"""Consumer-lag monitoring: Burrow-style status rules, the sampling monitor, its history."""
