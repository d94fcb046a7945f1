"""Export of everything kept about a recorded person (issue 18.2): jobs/export.py runs it."""
