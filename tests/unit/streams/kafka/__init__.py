"""Unit tests of ``streams/kafka/``."""
