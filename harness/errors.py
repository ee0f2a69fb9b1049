"""Errors that mean "the user asked for something that cannot be done"; the CLI prints them
as one line (no traceback) and exits with status 2. `UserError` lives in kernels/errors.py so
the op specs can raise it too; this module is where the harness imports it from."""

from quantbench.kernels.errors import UserError

__all__ = ["UserError"]
