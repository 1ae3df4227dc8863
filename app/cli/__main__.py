"""``python -m app.cli``: the same as the ``spp`` command."""

from app.cli import main

raise SystemExit(main())
