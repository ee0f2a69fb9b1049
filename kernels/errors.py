"""Errors shared by the formats and the low-level kernel modules (rotation, trellis), kept outside
the formats package so those modules can raise them without importing every format."""


class FormatError(ValueError):
    """Input a format cannot take: wrong shape, dtype, non-finite values, bad option."""
