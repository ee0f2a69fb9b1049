"""Errors that mean "the user asked for something that cannot be done"; the CLI prints them
as one line (no traceback) and exits with status 2. Subclass UserError for new kinds."""


class UserError(Exception):
    """A problem with the user's input: a bad flag, file, model, corpus or spec."""
