"""The one exception type for mistakes a user can make."""

import importlib.util


class PrecomputedTifError(Exception):
    """A problem with the user's input or environment, not a bug.

    The message is one line that says what is wrong and what to do about it;
    command-line tools print it without a traceback and exit with status 2.
    """


class DamagedData(PrecomputedTifError):
    """Stored bytes that fail a check (a size field, a checksum, a decoded size): the file
    named in the message is damaged, and nothing decoded from it may be used."""


def describe(exc: BaseException) -> str:
    """One line for an error: an ``OSError`` as its text and file, without the ``[Errno N]``
    prefix; anything else as it says itself."""
    if isinstance(exc, OSError) and exc.strerror and exc.filename:
        return f"{exc.strerror}: {exc.filename}"
    return str(exc)


def unfinished(exc: BaseException, dest: str, why: str) -> PrecomputedTifError:
    """The one-line error for a conversion (or meshing) stopped by ``exc``: what went wrong, that
    ``dest`` is not finished (``why``: how to tell), and that the same command resumes it."""
    return PrecomputedTifError(f"{describe(exc)}; {dest} is unfinished ({why}): fix this and run the same "
                               "command again")


_DISTRIBUTIONS = {"skimage": "scikit-image"}  # import names that differ from what pip installs


def require_extra(extra: str, what: str, *modules: str) -> None:
    """Raise a one-line error naming the extra to install when any of ``modules`` (import names) is
    not installed; finds them without importing them, so a run fails before any work is done."""
    missing = [_DISTRIBUTIONS.get(name, name) for name in modules if importlib.util.find_spec(name) is None]
    if missing:
        raise PrecomputedTifError(f"{what} needs {' and '.join(missing)}: pip install 'precomputed-tif[{extra}]'")
