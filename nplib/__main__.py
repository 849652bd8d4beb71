"""``python -m nplib``: see :mod:`nplib.cli`."""
from nplib.cli import main

raise SystemExit(main())
