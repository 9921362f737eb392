"""The studies: sweep runner (`run.py`), study definitions, figures."""
