"""Errors shared by the formats, the kernels and the harness, kept in a module of their own so
the lowest layers can raise them without importing anything else."""


class UserError(Exception):
    """A problem with the user's input: a bad flag, file, model, corpus or spec. The CLI prints
    it as one line (no traceback) and exits with status 2. Subclass it for new kinds."""


class FormatError(ValueError):
    """Input a format cannot take: wrong shape, dtype, non-finite values, bad option."""
