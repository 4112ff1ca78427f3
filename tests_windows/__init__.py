"""Tests run inside a Windows CPython under Wine; see conftest.py."""
