"""Unit tests of ``consumers/lag/``."""
