"""Typed errors: every bad input raises a subclass of RdecError; the CLI prints one line and exits non-zero."""


class RdecError(Exception):
    """Base class of every error rdec raises for bad input, keys or files."""


class InputError(RdecError):
    """An argument, image or file the user gave cannot be used."""


class KeyFileError(RdecError):
    """A key file is missing, malformed or has the wrong length."""


class WrongKeyError(RdecError):
    """The key does not match the one the data was encrypted with."""


class IntegrityError(RdecError):
    """The data was modified or truncated after encryption (authentication failed)."""


class FormatError(RdecError):
    """A file is not in the expected format (or was not made by rdec)."""


class UnsupportedError(RdecError):
    """A valid file uses a feature rdec deliberately does not handle."""


class TrainingDivergedError(RdecError):
    """The training loss stopped being finite; nothing from the diverged steps was saved."""
