"""The exception of the PCRE2 binding (kept in Python, as kernels' exceptions are)."""


class PcreError(ValueError):
    """A pattern that PCRE2 refuses, or a matching error; args = (message, offset)."""

    def __init__(self, message: str, offset: int):
        super().__init__(message, offset)
        self.message = message
        self.offset = offset

    def __str__(self) -> str:
        return self.message if self.offset < 0 else f"{self.message} at offset {self.offset}"
