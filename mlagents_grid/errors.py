"""The one exception type that the commands turn into a clear line and exit code 2."""


class GridError(Exception):
    """Bad input or unusable state, described in one line a user can act on."""
