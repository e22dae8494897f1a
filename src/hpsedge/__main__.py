"""``python -m hpsedge`` = the ``hpsedge`` command."""

from hpsedge.cli import main

main()
