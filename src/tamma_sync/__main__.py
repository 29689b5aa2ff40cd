"""`python -m tamma_sync` runs the CLI."""

from tamma_sync.cli import main

main()
