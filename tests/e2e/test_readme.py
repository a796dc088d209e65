"""The README's commands run as written (issue 12): every fenced block the README marks with
`<!-- readme-test -->` is run by bash, in order, against a running stack that the commands
find only through its stack.json, as a user's shell would after `poolfin up`."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from poolfin.stack import Stack, state_file

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
MARK = "<!-- readme-test -->"


def marked_blocks(readme: str) -> list[str]:
    return re.findall(re.escape(MARK) + r"\n```(?:sh|bash)\n(.*?)\n```", readme, re.S)


def test_the_readme_marks_its_runnable_blocks() -> None:
    readme = (ROOT / "README.md").read_text()
    blocks = marked_blocks(readme)
    assert len(blocks) == readme.count(MARK) >= 2  # every mark is on a block that is found
    assert any("poolfin pool seed" in b for b in blocks)
    assert any("curl" in b for b in blocks)


def test_the_readmes_commands_run_as_written(stack: Stack, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    state_file(str(data)).write_text(json.dumps(stack.describe()))
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("POOLFIN_")},
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
        "POOLFIN_DATA_DIR": str(data),  # as `poolfin up` left it; nothing else says where
    }
    for n, block in enumerate(marked_blocks((ROOT / "README.md").read_text()), 1):
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", block],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, (
            f"README block {n} failed ({done.returncode}):\n{block}\n--- stdout\n"
            f"{done.stdout[-3000:]}\n--- stderr\n{done.stderr[-3000:]}"
        )
        if "curl" in block:
            assert '"pool_id":"CE-1/SUP-1"' in done.stdout.replace(" ", ""), done.stdout
            assert done.stdout.rstrip().endswith("401\n403"), done.stdout[-500:]
