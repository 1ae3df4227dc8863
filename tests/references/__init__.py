"""Slow, obvious references the tests (and bench/) compare the package's fast code with.

Nothing here ships: ``app/`` never imports it. Tests import it as ``references.<module>`` (pytest
puts ``tests/`` on the path); bench scripts, run from the repository root with ``python -m``,
as ``tests.references.<module>``. (Plural, because pytest also puts
``tests/model/release/`` on the path, whose ``reference.py`` is the release importer's own.)
"""
