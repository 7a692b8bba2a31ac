"""``python -m mailstrom_py``: the command line."""

from .cli import main

raise SystemExit(main())
