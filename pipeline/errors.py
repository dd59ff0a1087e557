"""User errors: what the user typed or pointed at is wrong. The CLI prints one line and exits 2."""


class UserError(Exception):
    """Message format: '<key>=<value>: what is wrong and what to do'."""

    exit_code = 2
