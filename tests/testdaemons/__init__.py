"""Small real daemons that exercise the master and the skeletons in tests.

master.cf names them by dotted module path (column 8), e.g. ``testdaemons.echo``; the
test instance puts tests/ on PYTHONPATH (tests/helpers/instance.py). See
docs/master.md, "Test daemons".
"""
