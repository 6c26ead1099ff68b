"""Unit tests of ``streams/``; the stream core modules and settings at this level."""
