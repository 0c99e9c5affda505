"""Scoring: separation metrics (separation.py) and the RESULTS.md report (report.py)."""
