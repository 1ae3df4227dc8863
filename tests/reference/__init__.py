"""Slow, obvious references the tests (and bench/) compare the package's fast code with.

Nothing here ships: ``app/`` never imports it. Tests import it as ``reference.<module>`` (pytest
puts ``tests/`` on the path); bench scripts, run from the repository root with ``python -m``,
as ``tests.reference.<module>``.
"""
