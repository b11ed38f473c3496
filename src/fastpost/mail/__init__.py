"""Mail-specific library code shared by daemons and commands (Postfix's src/global)."""
