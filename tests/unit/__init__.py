"""Unit tests (no services), one directory per room of the product: ``schemas/``, ``streams/``,
``consumers/``, ``infra/``, and ``project/`` for the checks that span every room."""
