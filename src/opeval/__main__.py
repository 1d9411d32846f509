"""``python -m opeval``."""

from opeval.cli import main

main()
