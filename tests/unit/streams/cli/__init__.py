"""Unit tests of ``streams/cli/``."""
