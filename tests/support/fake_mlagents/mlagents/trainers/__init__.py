"""See learn.py."""
