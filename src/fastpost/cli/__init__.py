"""User commands (not daemons): the `fastpost` command and its Postfix-named tools."""
