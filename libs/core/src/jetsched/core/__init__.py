"""jetsched core: the wire contract and the pure decisions every service shares (no I/O)."""
