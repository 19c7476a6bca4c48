"""Entry points composed by Hydra (``run.py``)."""
