"""``python -m facegraft``: the same as the ``facegraft`` console script."""

from .cli import main

raise SystemExit(main())
