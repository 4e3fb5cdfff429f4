"""Benchmarks, run by ``make bench``: numbers measured in one run, on this machine."""
