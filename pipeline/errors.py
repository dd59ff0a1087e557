"""User errors: what the user typed or pointed at is wrong. The CLI prints one line and exits 2."""


class UserError(Exception):
    """Message format: '<key>=<value>: what is wrong and what to do'."""

    exit_code = 2


class StageFailed(Exception):
    """The stage ran but its checks failed (validate); one reason per line. The CLI prints them, exits 1."""

    exit_code = 1
