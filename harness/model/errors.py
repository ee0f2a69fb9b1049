"""Model errors: each is a UserError, so the CLI prints one line instead of a traceback."""
from quantbench.harness.errors import UserError


class ModelError(UserError):
    """A model that cannot be loaded or run as asked."""


class ModelFileError(ModelError):
    """A model file or folder that is missing, unreadable, truncated or not what it claims to be."""


class UnsupportedModelError(ModelError):
    """A model this forward does not implement (architecture, rope scaling, tokenizer, tensor type)."""


class ContextLengthError(ModelError):
    """More positions than the model (or the KV cache) supports."""
