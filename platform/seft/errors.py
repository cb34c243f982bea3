"""Errors the CLI reports in one line and exits with a status, instead of a traceback."""


class SeftError(Exception):
    """A user-facing error: bad input, a failed stage, a store problem."""

    exit_code = 1


class SpecError(SeftError):
    """A pipeline spec (or a --set override) that does not validate."""

    exit_code = 2
