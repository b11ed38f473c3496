"""Test helpers shared by the suite (importable because conftest puts tests/ on sys.path)."""
