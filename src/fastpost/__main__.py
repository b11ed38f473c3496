"""``python -m fastpost`` runs the fastpost command."""

import sys

from fastpost.cli.main import main

sys.exit(main(["fastpost"] + sys.argv[1:]))
