"""Parlor's benchmarks: ``python -m bench`` (``make bench``) runs them all and prints a report."""
