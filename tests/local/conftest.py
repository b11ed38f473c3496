"""Fixtures for the delivery agent tests (local, virtual, pipe, error, discard)."""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from mailsite import remove_users  # noqa: E402  (tests/local/mailsite.py)


@pytest.fixture(scope="session", autouse=True)
def _remove_test_users():
    yield
    remove_users()
