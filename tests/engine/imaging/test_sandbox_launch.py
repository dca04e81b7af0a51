"""How the sandbox starts its decoding children (engine.imaging.sandbox): the lean launch,
which copies CPython's private fork-server launch to skip re-importing the parent's __main__,
runs only on the Pythons it was checked against; anywhere else the public ForkServerProcess
does, and both decode alike. Each mode runs in a fresh interpreter whose __main__ notes every
time a child imports it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from engine.imaging import sandbox

REPO = Path(__file__).resolve().parents[3]
# Run as __main__: decodes one PNG DECODES times in the mode given, prints what came back. A
# child that imports this file again (as __mp_main__) adds a line to the marker file.
SCRIPT = """
import io, json, sys
if __name__ == "__mp_main__":
    with open(sys.argv[2], "a") as marker:
        marker.write("imported\\n")
if __name__ == "__main__":
    from multiprocessing import context
    from PIL import Image
    from engine.imaging import sandbox
    from engine.imaging.budget import Budget
    if sys.argv[1] == "public":
        sandbox._process_class = context.ForkServerProcess
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), (200, 40, 90)).save(buffer, "PNG")
    runs = [sandbox.run(buffer.getvalue(), Budget()) for _ in range(DECODES)]
    print(json.dumps([[run.image.size, run.image.getpixel((5, 5))] for run in runs]))
"""
DECODES = 3


def test_the_lean_launch_runs_only_on_pythons_it_was_checked_against() -> None:
    first, last = sandbox.LEAN_LAUNCH_PYTHONS
    assert sandbox.lean_launch_supported(first) and sandbox.lean_launch_supported(last)
    assert not sandbox.lean_launch_supported((first[0], first[1] - 1))
    assert not sandbox.lean_launch_supported((last[0], last[1] + 1))
    this_python = sandbox.lean_launch_supported()
    assert (sandbox._process_class is sandbox._LeanProcess) == this_python


def decode_in_a_fresh_python(mode: str, tmp_path: Path) -> tuple[list[object], int]:
    script, marker = tmp_path / f"main_{mode}.py", tmp_path / f"imports_{mode}.txt"
    script.write_text(SCRIPT.replace("DECODES", str(DECODES)))
    done = subprocess.run(
        [sys.executable, str(script), mode, str(marker)],
        cwd=REPO,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    imports = len(marker.read_text().splitlines()) if marker.exists() else 0
    return json.loads(done.stdout), imports


def test_the_public_launch_decodes_and_imports_main_in_each_child(tmp_path: Path) -> None:
    """What every child does on a Python the lean launch was not checked against."""
    decoded, imports = decode_in_a_fresh_python("public", tmp_path)
    assert decoded == [[[40, 30], [200, 40, 90]]] * DECODES
    assert imports == DECODES  # each child ran the parent's __main__ again


@pytest.mark.skipif(not sandbox.lean_launch_supported(), reason="the lean launch is off here")
def test_the_lean_launch_decodes_alike_without_importing_main(tmp_path: Path) -> None:
    decoded, imports = decode_in_a_fresh_python("lean", tmp_path)
    assert decoded == [[[40, 30], [200, 40, 90]]] * DECODES
    assert imports == 0
