"""The `jetsched` command line: run workers, submit and inspect jobs, run a dev stack."""
