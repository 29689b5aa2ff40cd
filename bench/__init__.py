"""Reproducible benchmarks of tamma-sync; each writes its figures to docs/benchmarks.md.

Run them from the repository root with the project's venv, e.g.
`.venv/bin/python -m bench.sync_initial`. See bench/README.md.
"""
