"""Unit tests of ``consumers/api/``."""
