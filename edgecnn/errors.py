"""The one exception a user mistake raises; the CLI turns it into one line and exit code 2."""


class EdgecnnError(Exception):
    """Bad input: names the bad value and what is accepted."""
