"""The docker runtime's own rules, without an engine: Compose durations, image tags by
content, what a Compose file may say."""

from __future__ import annotations

from pathlib import Path

import pytest

from opeval.errors import EnvironmentProblem
from opeval.runtimes import ContainerDefinition
from opeval.runtimes._docker import compose_seconds, image_tag


@pytest.mark.parametrize(("value", "seconds"), [("10s", 10.0), ("1m30s", 90.0), ("500ms", 0.5), (7, 7.0),
                                                ("1h", 3600.0)])
def test_compose_durations(value: object, seconds: float) -> None:
    assert compose_seconds(value) == seconds


@pytest.mark.parametrize("value", ["soon", "10", "10 s", "", "-5s"])
def test_a_bad_duration_is_refused(value: str) -> None:
    with pytest.raises(EnvironmentProblem, match="not a Compose duration"):
        compose_seconds(value)


def definition(tmp_path: Path, service: str, binary: bytes = b"\x7fELF") -> ContainerDefinition:
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "compose.yaml").write_text(f"services:\n  member:\n{service}")
    (tmp_path / "Dockerfile").write_text("FROM scratch\nCOPY prog /usr/local/bin/\n")
    (tmp_path / "prog").write_bytes(binary)
    return ContainerDefinition(compose=tmp_path / "compose.yaml", files={"prog": tmp_path / "prog"})


def test_the_tag_follows_the_content_of_everything_the_build_reads(tmp_path: Path) -> None:
    a = definition(tmp_path / "a", "    image: x/y\n    build: {context: .}\n")
    b = definition(tmp_path / "b", "    image: x/y\n    build: {context: .}\n")
    c = definition(tmp_path / "c", "    image: x/y\n    build: {context: .}\n", binary=b"\x7fELF2")
    assert image_tag(a)[0] == image_tag(b)[0] != image_tag(c)[0]
    assert image_tag(a)[0].startswith("x/y:")


def test_a_compose_key_opeval_does_not_use_is_refused_not_ignored(tmp_path: Path) -> None:
    d = definition(tmp_path, "    image: x/y\n    ports: ['2379:2379']\n")
    with pytest.raises(EnvironmentProblem, match=r"services.member.ports is not used by opeval \(it reads build, "):
        image_tag(d)


@pytest.mark.parametrize(("service", "message"), [
    ("    image: [x/y\n", r"compose.yaml:\d+: not valid YAML: "),
    ("    image: " + "[" * 2000 + "\n", "compose.yaml: not valid YAML: nested too deeply"),
    ("", "not a usable Compose file with a 'member' service")])
def test_a_malformed_compose_file_is_refused_in_one_line(tmp_path: Path, service: str, message: str) -> None:
    d = definition(tmp_path, service)
    if not service:
        d.compose.write_text("services: {}\n")
    with pytest.raises(EnvironmentProblem, match=message) as refused:
        image_tag(d)
    assert "\n" not in str(refused.value)
