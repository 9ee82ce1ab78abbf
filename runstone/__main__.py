"""``python -m runstone`` runs the command line."""

from runstone.cli import main

raise SystemExit(main())
