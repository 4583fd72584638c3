"""The pure domain core.

Rule (enforced by tests/unit/test_purity.py and the import-linter contract in pyproject.toml):
nothing under ``mh_platform.core`` or ``mh_platform.crypto`` imports Flask, SQLAlchemy,
scikit-learn or any other layer of this project, does I/O against a database, or reads the
clock. Time is passed in.
"""
