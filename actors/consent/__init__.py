"""Consent of the recorded person (issue 18.1): workspaces' notices, recorders' consent records,
and the gate the write paths ask before storing anything a recorder sends."""
