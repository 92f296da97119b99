"""Allow ``python -m mssgw``."""

from mssgw.cli import main

raise SystemExit(main())
