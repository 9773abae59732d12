"""jetsched dispatcher: orders ready jobs by priority and hands them to capable workers with free slots."""
