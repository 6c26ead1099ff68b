"""Unit tests of ``consumers/sink/``."""
