"""Unit tests of the tests' own helpers (``tests/support``)."""
