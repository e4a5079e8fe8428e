"""The one exception type for mistakes a user can make."""


class PrecomputedTifError(Exception):
    """A problem with the user's input or environment, not a bug.

    The message is one line that says what is wrong and what to do about it;
    command-line tools print it without a traceback and exit with status 2.
    """


class DamagedData(PrecomputedTifError):
    """Stored bytes that fail a check (a size field, a checksum, a decoded size): the file
    named in the message is damaged, and nothing decoded from it may be used."""


def unfinished(exc: BaseException, dest: str, why: str) -> PrecomputedTifError:
    """The one-line error for a conversion (or meshing) stopped by ``exc``: what went wrong, that
    ``dest`` is not finished (``why``: how to tell), and that the same command resumes it."""
    if isinstance(exc, OSError) and exc.strerror and exc.filename:
        what = f"{exc.strerror}: {exc.filename}"  # errno's text without the [Errno N] prefix
    else:
        what = str(exc)
    return PrecomputedTifError(f"{what}; {dest} is unfinished ({why}): fix this and run the same command again")
