"""The README's "Writing a plugin" shows the test plugin's files exactly as they are (and the
suite runs those files: tests/plugins/toykv), so the walkthrough cannot rot."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_file_the_readme_shows_is_the_file_in_the_tests() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Writing a plugin"):]
    blocks = re.findall(r"```(?:python|toml)\n# (tests/plugins/\S+)\n(.*?)```", section, re.S)
    shown = {path for path, _ in blocks}
    assert shown == {"tests/plugins/toykv/toykv/__init__.py", "tests/plugins/toykv/pyproject.toml",
                     "tests/plugins/toykv/test_toykv.py"}
    for path, body in blocks:
        assert body == (ROOT / path).read_text(), f"the README's copy of {path} differs from the file"
