"""Installs toykv for its tests as ``pip install -e tests/plugins/toykv`` would: its
``pyproject.toml`` entry points as package metadata on the path, nothing edited in opeval."""

from __future__ import annotations

import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from opeval.subjects import SUBJECTS

HERE = Path(__file__).parent


def install_metadata(site: Path) -> None:
    """Write the package's ``.dist-info`` (name, version, entry points) into ``site``."""
    project = tomllib.loads((HERE / "pyproject.toml").read_text())["project"]
    info = site / f"{project['name']}-{project['version']}.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n")
    groups = project.get("entry-points", {})
    (info / "entry_points.txt").write_text("".join(
        f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()) for group, eps in groups.items()))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(item.path).parents:
            item.add_marker(pytest.mark.integration)  # its members are real processes


@pytest.fixture(autouse=True, scope="module")
def toykv_installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    site = tmp_path_factory.mktemp("site")
    install_metadata(site)
    sys.path[:0] = [str(site), str(HERE)]
    SUBJECTS.reload()
    try:
        yield site
    finally:
        sys.path.remove(str(site))
        sys.path.remove(str(HERE))
        SUBJECTS.reload()  # uninstalled: the next lookup no longer finds it
