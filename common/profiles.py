"""Model profiles: the one definition of each (crop size, default training time, label).

The command line's choices, the add-on's menu and ``facegraft run``'s defaults come from
here; ``ml/model.py`` builds each profile's network on its crop size. Guides and datasets
for a profile are made at its size. Importable without torch (the add-on reads it).
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import FaceGraftError


@dataclass(frozen=True)
class Profile:
    name: str
    label: str
    resolution: int  # crop size the model works at, px
    default_minutes: float  # training time 'facegraft run' and the panel start from
    description: str


PROFILES: dict[str, Profile] = {p.name: p for p in (
    Profile("tiny", "Tiny", 64, 1.0, "64 px, seconds: for tests"),
    Profile("cpu", "CPU", 128, 12.0, "128 px: a usable result in about 15 minutes on a laptop"),
    Profile("gpu", "GPU", 256, 20.0, "256 px: for one CUDA GPU"),
    Profile("hq", "HQ", 512, 60.0, "512 px: for a large CUDA GPU, an hour and more"),
)}
PROFILE_NAMES = tuple(PROFILES)
# The sets of CG guides a model can be conditioned on (ml/model.py's GUIDE_SETS).
GUIDE_NAMES = ("mesh", "texture", "eyes")


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise FaceGraftError(f"profile {name!r}: choose one of {', '.join(PROFILES)}") from None
