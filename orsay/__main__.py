"""`python -m orsay ...` is `orsay ...`."""

from orsay.cli import main

raise SystemExit(main())
