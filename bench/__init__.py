"""Benchmarks (run as scripts: `python bench/<name>.py --help`); a package so tests can import their pure helpers."""
