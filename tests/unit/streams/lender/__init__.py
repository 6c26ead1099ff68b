"""Unit tests of ``streams/lender/``."""
