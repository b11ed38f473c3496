"""fastpost: a Postfix-compatible mail transfer agent.

Importing this package imports nothing else, so command-line start-up stays cheap;
import the subpackages you need (``fastpost.mail.config``, ``fastpost.smtp`` ...).
"""

from fastpost._version import __version__

__all__ = ["__version__"]
