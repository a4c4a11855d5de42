"""etc/gflow.toml: every known setting, written out live, equal to the defaults."""

from __future__ import annotations

import re
from pathlib import Path

from gflow.config import config_keys, load_config

EXAMPLE = Path(__file__).resolve().parents[2] / "etc" / "gflow.toml"


def test_example_parses_to_exactly_the_defaults(tmp_path):
    defaults = load_config(None, env={"HOME": str(tmp_path)})
    example = load_config(EXAMPLE, env={"HOME": str(tmp_path)})
    assert example.warnings == ()
    for section in ("timezone", "daemon", "scheduler", "launcher", "api", "projects",
                    "notifications", "shell", "logging", "gpu", "quota", "executor"):
        assert getattr(example, section) == getattr(defaults, section), section


def test_example_mentions_every_setting():
    text = EXAMPLE.read_text()
    live_section = commented_section = None      # a commented example has its own header
    present = set()
    for line in text.splitlines():
        commented = line.startswith("#")
        stripped = line.lstrip("# ").strip()
        m = re.match(r"^\[\[?([a-z_.]+)\]\]?$", stripped)
        if m:
            if commented:
                commented_section = m.group(1)
            else:
                live_section = commented_section = m.group(1)
                present.add(live_section)
            continue
        m = re.match(r"^([a-z_]+)\s*=", stripped)
        if m:
            section = commented_section if commented else live_section
            present.add(f"{section}.{m.group(1)}" if section else m.group(1))
    missing = config_keys() - present
    assert not missing, f"settings missing from etc/gflow.toml: {sorted(missing)}"
