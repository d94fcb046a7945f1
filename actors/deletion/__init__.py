"""Deleting what was recorded (issue 18.3): hide at once, purge after a grace period."""
