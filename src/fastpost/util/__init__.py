"""Library code that knows nothing about mail (Postfix's src/util)."""
