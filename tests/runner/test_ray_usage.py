"""The Ray executor's options fail in one line, before anything is recorded."""

from __future__ import annotations

from pathlib import Path

import pytest

from opeval.cli import main

CAMPAIGNS = Path(__file__).parents[2] / "campaigns"


@pytest.mark.parametrize(("args", "message"), [
    (["--executor", "ray"], "--executor ray needs a store every node can reach"),
    (["--address", "127.0.0.1:6379"], "--address and --cpus-per-trial are for --executor ray"),
    (["--executor", "ray", "--cpus-per-trial", "0"], "--cpus-per-trial must be positive"),
])
def test_bad_ray_options_are_one_line(args: list[str], message: str, store_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["run", "campaign", str(CAMPAIGNS / "quickstart.yaml"), "--store", str(store_path), *args])
    assert exited.value.code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not store_path.exists()  # nothing recorded, not even a campaign


def test_a_single_trial_takes_no_executor(store_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["run", "--executor", "ray", "--store", str(store_path)])
    assert exited.value.code == 2
    assert "are for campaigns" in capsys.readouterr().err
