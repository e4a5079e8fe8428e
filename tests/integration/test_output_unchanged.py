"""What every format writes stays byte for byte what it was when tests/data/output-digests.json
was recorded: restructuring the code must not change a single output file.

A change meant to change output (a new key in info, a better encoder setting) records the new
digests with ``python -m tests.helpers.output_digests --write``, and says so in its commit."""

import json

from tests.helpers.output_digests import RECORDED, current_digests, library_versions


def test_every_format_writes_the_recorded_bytes():
    with open(RECORDED) as f:
        recorded = json.load(f)
    now = current_digests()
    drift = {k: (v, library_versions().get(k)) for k, v in recorded["libraries"].items()
             if library_versions().get(k) != v}
    hint = f" (libraries changed since the digests were recorded: {drift})" if drift else ""
    assert sorted(now) == sorted(recorded["digests"]), hint
    for case, files in recorded["digests"].items():
        assert sorted(now[case]) == sorted(files), f"{case}: other files{hint}"
        changed = [path for path, digest in files.items() if now[case][path] != digest]
        assert not changed, f"{case}: {changed} changed{hint}"
