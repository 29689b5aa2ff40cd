"""Reproducible benchmarks of tamma-sync; each prints its report, and with `--record`
appends it to its history in bench/results/.

Run them from the repository root with the project's venv, e.g.
`.venv/bin/python -m bench.sync_initial`. See bench/README.md.
"""
