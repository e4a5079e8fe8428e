"""The one exception type for mistakes a user can make, and how its messages name parameters.

A message about a parameter names it as the reader knows it: a Python caller of
:func:`precomputed_tif.convert` passed ``n_cores=0``, a user of ``precomputed-tif``
typed ``--n-cores 0``. The library writes the name once, marked (:func:`param`,
:func:`setting`, or :func:`either` for any two wordings); ``str(exc)`` gives the Python
wording and :func:`for_command_line` the command line's, which the command-line
tools print. The marks survive an error built from another one's :func:`describe`
and pickling (a worker process's error), and never show in either rendering.
"""

import importlib.util
import re

# Private-use characters: they appear in no path, value or message a user writes.
_OPEN, _OR, _CLOSE = "\ue000", "\ue001", "\ue002"
_MARKED = re.compile(f"{_OPEN}([^{_OPEN}{_OR}{_CLOSE}]*){_OR}([^{_OPEN}{_OR}{_CLOSE}]*){_CLOSE}")

# Parameters whose command-line flags are not "--" + the name with hyphens for underscores.
_FLAGS: dict[str, tuple[str, ...]] = {"sharded": ("--sharded", "--unsharded")}


def flags(name: str) -> tuple[str, ...]:
    """The command-line flags that set the Python parameter ``name`` (``n_cores``:
    ``--n-cores``; ``sharded``: ``--sharded`` and ``--unsharded``)."""
    return _FLAGS.get(name, ("--" + name.replace("_", "-"),))


def either(python: str, command_line: str) -> str:
    """Text that reads ``python`` in ``str(exc)`` and ``command_line`` where a command-line
    tool prints the error; neither may itself hold marked text."""
    for text in (python, command_line):
        if any(c in text for c in (_OPEN, _OR, _CLOSE)):
            raise ValueError(f"marked text cannot nest: {text!r}")
    return f"{_OPEN}{python}{_OR}{command_line}{_CLOSE}"


def param(name: str) -> str:
    """The parameter ``name`` (a field of the option objects or a keyword of the library's
    functions) in a message: ``n_cores`` in Python, ``--n-cores`` on the command line
    (``--sharded/--unsharded`` for a parameter with two flags)."""
    return either(name, "/".join(flags(name)))


def setting(name: str, value: object) -> str:
    """The parameter ``name`` set to ``value`` in a message: ``levels=9`` or ``--levels 9``;
    a bool as its flag alone (``overwrite=True``: ``--overwrite``; ``sharded=False``:
    ``--unsharded``)."""
    names = flags(name)
    # A pair of flags is (True's, False's); a single flag is the True one.
    shown = (names[0] if value or len(names) == 1 else names[1]) if isinstance(value, bool) else \
        f"{names[0]} {value}"
    return either(f"{name}={value!r}", shown)


def params(*names: str) -> str:
    """Several parameters as a list (``a, b and c``), every flag of each on the command line."""
    return either(_listed(names), _listed([f for name in names for f in flags(name)]))


def _listed(words) -> str:
    words = list(words)
    return ", ".join(words[:-1]) + " and " + words[-1] if len(words) > 1 else words[0]


# Whether log lines name parameters by their flags: set by the command-line tools
# (:func:`speak_command_line`), so a library caller's log reads ``voxel_size`` and a user's
# ``--voxel-size``.
_LOG_COMMAND_LINE = False


def speak_command_line(on: bool = True) -> None:
    """Make :func:`in_log` render parameters as command-line flags (for this process)."""
    global _LOG_COMMAND_LINE
    _LOG_COMMAND_LINE = on


def in_log(text: str) -> str:
    """Marked ``text`` (:func:`param`, :func:`setting`) worded for a log line: the flags when a
    command-line tool runs, the Python names otherwise."""
    return render(text, _LOG_COMMAND_LINE)


def render(text: str, command_line: bool = False) -> str:
    """``text`` with every marked part in its Python (or ``command_line``) wording."""
    return _MARKED.sub(lambda m: m.group(2 if command_line else 1), text)


class PrecomputedTifError(Exception):
    """A problem with the user's input or environment, not a bug.

    The message is one line that says what is wrong and what to do about it;
    command-line tools print it (:func:`for_command_line`) without a traceback and
    exit with status 2. ``str()`` names parameters as Python spells them; ``args[0]`` holds
    the message with its parameters marked.
    """

    def __str__(self) -> str:
        return render(super().__str__())

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"


class DamagedData(PrecomputedTifError):
    """Stored bytes that fail a check (a size field, a checksum, a decoded size): the file
    named in the message is damaged, and nothing decoded from it may be used."""


def for_command_line(exc: BaseException) -> str:
    """One line for an error, parameters named by their command-line flags."""
    return render(describe(exc), command_line=True)


def describe(exc: BaseException) -> str:
    """One line for an error: an ``OSError`` as its text and file, without the ``[Errno N]``
    prefix; a :class:`PrecomputedTifError` with its parameters still marked, for a new error
    built from it (render it with ``str`` of that error or :func:`for_command_line`);
    anything else as it says itself."""
    if isinstance(exc, OSError) and exc.strerror and exc.filename:
        return f"{exc.strerror}: {exc.filename}"
    if isinstance(exc, PrecomputedTifError):
        return Exception.__str__(exc)
    return str(exc)


def unfinished(exc: BaseException, dest: str, why: str) -> PrecomputedTifError:
    """The one-line error for a conversion (or meshing) stopped by ``exc``: what went wrong, that
    ``dest`` is not finished (``why``: how to tell), and that the same command (or call) resumes it."""
    again = either("make the same call again", "run the same command again")
    return PrecomputedTifError(f"{describe(exc)}; {dest} is unfinished ({why}): fix this and {again}")


_DISTRIBUTIONS = {"skimage": "scikit-image"}  # import names that differ from what pip installs


def require_extra(extra: str, what: str, *modules: str) -> None:
    """Raise a one-line error naming the extra to install when any of ``modules`` (import names) is
    not installed; finds them without importing them, so a run fails before any work is done."""
    missing = [_DISTRIBUTIONS.get(name, name) for name in modules if importlib.util.find_spec(name) is None]
    if missing:
        raise PrecomputedTifError(f"{what} needs {' and '.join(missing)}: pip install 'precomputed-tif[{extra}]'")
