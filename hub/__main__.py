"""``python -m hub``: the ``hub`` command line."""

from hub.app.cli import main

main()
