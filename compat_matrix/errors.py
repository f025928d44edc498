"""The error every part raises for a user's mistake: bad input, a bad
environment. The CLI prints its message (no traceback) and exits with 2."""


class UserError(Exception):
    exit_code = 2
