"""The experiments' one error: a file, setting or reference that does not follow the schema."""
from quantbench.harness.errors import UserError


class ExperimentError(UserError):
    """An experiment file that is missing, unreadable or does not follow the schema."""
