"""The one exception type users see: a problem they can fix, shown as one line."""


class UserError(Exception):
    """A problem the user can fix; shown as one line, never a traceback."""
