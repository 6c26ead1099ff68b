"""``python -m streams.cli``: the ``registry`` command (:func:`streams.cli.main`)."""

from streams.cli import main

main()
