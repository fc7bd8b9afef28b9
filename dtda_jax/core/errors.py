"""Errors that mean "the user asked for something that cannot work", as opposed to bugs.

Command lines answer a :class:`UserError` with its message (which names the problem and the
fix) and exit status 2; anything else is a bug and keeps its traceback.
"""


class UserError(Exception):
    """A problem with the user's input (config, files, arguments); the message says the fix."""


class ConfigError(UserError, ValueError):
    """A config value that cannot work; the message names the field and the fix."""
