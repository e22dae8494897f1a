"""``python -m hpsedge.cli``: the command line."""

from hpsedge.cli import main

main()
