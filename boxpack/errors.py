"""The one error type boxpack raises; its message is what the CLI prints."""


class BoxpackError(Exception):
    """A problem with the input, the options or the output, described in one line."""
