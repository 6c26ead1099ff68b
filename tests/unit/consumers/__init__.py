"""Unit tests of ``consumers/``."""
