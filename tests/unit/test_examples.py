"""Every command shown to a user parses: the examples in each command's ``-h`` and the commands
in the README's code blocks are given to the command's own parser (what would make it exit
with "unrecognized arguments" or "invalid choice" fails here), the README's Python blocks
compile, and every command's ``-h`` runs and shows its examples as they must be typed."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from importlib.metadata import entry_points

import pytest

from precomputed_tif.cli import blockfs, convert, demo, mesh, screenshot, webserver, write_points
from tests.helpers import CHECKOUT as ROOT

BIN = os.path.dirname(sys.executable)

# Each console script's parser, by the name a user types.
PARSERS = {
    "precomputed-tif": convert.build_parser,
    "precomputed-webserver": webserver.build_parser,
    "precomputed-write-points": write_points.build_parser,
    "precomputed-mesh": mesh.build_parser,
    "precomputed-screenshot": screenshot.build_parser,
    "blockfs-info": blockfs.build_info_parser,
    "blockfs2tif": blockfs.build_tif_parser,
}
# Commands run as modules (python -m ...), by their module.
MODULES = {"precomputed_tif.cli.demo": demo.build_parser, "precomputed_tif.cli.convert": convert.build_parser,
           "precomputed_tif.cli.webserver": webserver.build_parser}
SHELL_OPERATORS = {"|", "||", "&&", ";", "&", ">", ">>", "2>&1", "<"}


def test_every_console_script_has_its_parser_here():
    scripts = {e.name for e in entry_points(group="console_scripts") if e.value.startswith("precomputed_tif.")}
    assert scripts == set(PARSERS)


def joined_lines(text: str) -> list[str]:
    """Lines with backslash continuations joined, comments dropped."""
    out, pending = [], ""
    for line in text.splitlines():
        line = line.rstrip()
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        out.append(pending + line)
        pending = ""
    return out


def command_of(line: str) -> tuple[str, list[str]] | None:
    """(program, arguments) of a shell line that runs one of the project's commands, else None;
    arguments stop at the first shell operator or comment."""
    line = re.sub(r"\s{2,}\(.*\)$", "", line)  # an example's note: "cmd ...    (what it makes)"
    try:
        words = shlex.split(line, comments=True)
    except ValueError:
        return None
    while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", words[0]):  # VAR=value before a command
        words = words[1:]
    for i, w in enumerate(words):
        if w in SHELL_OPERATORS:
            words = words[:i]
            break
    if not words:
        return None
    if words[0] in PARSERS:
        return words[0], words[1:]
    python = re.fullmatch(r"python3?|\S*/python3?", words[0])
    if len(words) >= 3 and python and words[1] == "-m" and words[2] in MODULES:
        return words[2], words[3:]
    return None


def examples_in_help() -> list[tuple[str, str, list[str]]]:
    out = []
    for prog, build in PARSERS.items():
        epilog = build().epilog or ""
        for line in joined_lines(epilog):
            found = command_of(line.strip())
            if found:
                out.append((f"{prog} -h", *found))
    return out


def readme_blocks() -> list[tuple[str, str]]:
    """(language, text) of each fenced code block of the README."""
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        text = f.read()
    return [(m.group(1), m.group(2)) for m in re.finditer(r"^ *```(\w*)\n(.*?)^ *```", text, re.S | re.M)]


def examples_in_readme() -> list[tuple[str, str, list[str]]]:
    out = []
    for lang, block in readme_blocks():
        if lang not in ("bash", "sh", "shell", ""):
            continue
        for line in joined_lines(block):
            found = command_of(line.strip())
            if found:
                out.append(("README", *found))
    return out


HELP_EXAMPLES = examples_in_help()
README_EXAMPLES = examples_in_readme()


def test_there_are_examples_to_check():
    # Guards the extraction itself: a change to how examples are written must not make this test vacuous.
    # Every command's -h shows at least one example (a new user copies it).
    assert {prog for _, prog, _ in HELP_EXAMPLES} == set(PARSERS), HELP_EXAMPLES
    assert len(README_EXAMPLES) >= 15, README_EXAMPLES


@pytest.mark.parametrize("where, prog, argv", HELP_EXAMPLES + README_EXAMPLES,
                         ids=[f"{w}:{shlex.join([p, *a])[:70]}" for w, p, a in HELP_EXAMPLES + README_EXAMPLES])
def test_example_parses(where, prog, argv, capsys):
    build = PARSERS.get(prog) or MODULES[prog]
    parser = build()
    try:
        parser.parse_args(argv)
    except SystemExit as exc:
        if exc.code == 0 and {"-h", "--help"} & set(argv):
            return
        pytest.fail(f"{where}: `{shlex.join([prog, *argv])}` does not parse: {capsys.readouterr().err.strip()}")


def test_readme_python_blocks_compile():
    blocks = [text for lang, text in readme_blocks() if lang == "python"]
    assert blocks
    for text in blocks:
        compile(text, "README.md", "exec")


@pytest.mark.parametrize("prog", sorted(PARSERS))
def test_help_runs_and_shows_examples_as_typed(prog):
    proc = subprocess.run([os.path.join(BIN, prog), "-h"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.startswith("usage:"), proc.stderr
    # What argparse prints literally (an epilog) must not carry the escaping its help strings need.
    assert "%%" not in proc.stdout, proc.stdout


def test_readme_lists_every_format_the_server_takes():
    from precomputed_tif import formats

    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        serve_section = f.read().split("## Serve: `precomputed-webserver`", 1)[1].split("\n## ", 1)[0]
    listed = re.search(r"`--format ([a-z|-]+)`", serve_section)
    assert listed, "the Serve section names the server's --format choices"
    assert listed.group(1).split("|") == list(formats.served_names())
