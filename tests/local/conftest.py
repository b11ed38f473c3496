"""Fixtures for the delivery agent tests (local, virtual, pipe, error, discard)."""

import pytest

from helpers.mailsite import remove_users


@pytest.fixture(scope="session", autouse=True)
def _remove_test_users():
    """The users the tests created (helpers.mailsite.make_user) go at the end."""
    yield
    remove_users()
