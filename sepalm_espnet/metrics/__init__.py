"""Scoring: separation metrics (separation.py), WER (wer.py), output speech (speech.py, speaker.py),
speed (rtf.py), the systems manifest (systems.py), stage 14's driver (scoring.py) and RESULTS.md (report.py)."""
