"""The worker runtime: pools, supervision, wake-ups, recovery, the scheduler."""
