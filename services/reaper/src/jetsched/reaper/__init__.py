"""jetsched reaper: applies outcomes (results, retries, dead letters) and rescues jobs of lost workers."""
