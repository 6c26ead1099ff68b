"""Unit tests of ``consumers/risk/``."""
