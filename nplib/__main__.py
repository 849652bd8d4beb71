"""``python -m nplib``: see :mod:`nplib.cli`."""
from .cli import main

raise SystemExit(main())
