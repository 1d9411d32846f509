"""Files shipped beside the code (subject definitions), found in a wheel or a checkout."""

from __future__ import annotations

from pathlib import Path

_PACKAGED = Path(__file__).parent / "_assets"
_CHECKOUT = Path(__file__).resolve().parents[2]


def asset_path(relative: str) -> Path:
    """The path of a shipped asset such as ``subjects/etcd/subject.yaml``."""
    for root in (_PACKAGED, _CHECKOUT):
        candidate = root / relative
        if candidate.exists():
            return candidate
    raise FileNotFoundError(f"opeval asset {relative} is missing from this installation")
