"""HTTP routes of the registry: operations (metrics, lag dashboard) and the risk API."""
