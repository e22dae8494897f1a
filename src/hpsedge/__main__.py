"""``python -m hpsedge`` = the ``hpsedge`` command."""

from hpsedge._entry import main

main()
