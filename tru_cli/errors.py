"""The one exception users see: a short message naming the bad key, file or value and the fix."""


class TruError(Exception):
    """A user-facing error; the CLI prints `error: <message>` on one line, without a traceback."""
