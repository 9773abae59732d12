"""The web dashboard: `jetsched dashboard --port N` (see docs/operations.md, "Dashboard")."""
