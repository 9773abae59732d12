"""jetsched bus: the NATS JetStream shell every service shares (the only package that imports nats)."""
