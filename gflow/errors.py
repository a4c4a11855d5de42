"""Exception types shared by every layer; each carries a message fit for one line of output."""


class GflowError(Exception):
    """Base class: the message is meant for the user as is."""


class ParseError(GflowError, ValueError):
    """A user-supplied value (time, memory, id list, ...) could not be parsed."""


class ConfigError(GflowError):
    """The configuration is invalid; the message names the dotted setting."""


class TransitionError(GflowError):
    """A state change that the allowed-transitions table forbids."""


class StoreError(GflowError):
    """The durable store could not persist a change (disk full, unwritable, ...)."""
