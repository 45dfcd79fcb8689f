"""Model profiles' crop sizes, for code that must not import torch (the add-on).

``ml/model.py`` builds its profiles on these sizes; guides and datasets for a profile are
made at its size.
"""

PROFILE_RESOLUTION = {"tiny": 64, "cpu": 128, "gpu": 256, "hq": 512}
