"""``python -m bindrt`` runs the CLI."""

import sys

from bindrt.cli import main

sys.exit(main())
