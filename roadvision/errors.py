"""Errors a user can act on. The CLI prints their message on one line and exits non-zero."""


class UserError(Exception):
    """Bad input from a user (a flag, a path, a parameter); the message says what and why."""
