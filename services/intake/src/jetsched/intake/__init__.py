"""jetsched intake: accepts and validates job requests, stores them, and serves the control API."""
