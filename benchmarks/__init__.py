"""pytest-benchmark files (a package, so its conftest never shadows tests/conftest.py)."""
