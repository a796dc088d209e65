"""Every setting is in README's settings table: a setting nobody can find does not exist."""

from __future__ import annotations

import re
from pathlib import Path

from shared.settings import Settings

README = Path(__file__).resolve().parents[2] / "README.md"


def test_every_setting_has_a_row_in_the_readmes_settings_table() -> None:
    rows = set(re.findall(r"^\| `(POOLFIN_[A-Z0-9_]+)` \|", README.read_text(), re.M))
    assert {f"POOLFIN_{name.upper()}" for name in Settings.model_fields} <= rows
