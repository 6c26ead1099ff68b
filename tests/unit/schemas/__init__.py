"""Unit tests of ``schemas/``."""
