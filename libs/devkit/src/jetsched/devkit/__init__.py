"""Development and test kit: an embedded nats-server, process control, waiting helpers, the dev stack."""
