"""The merge's choices, importable without OpenCV (the command line's --help uses them)."""

COLOR_MODES = ("none", "mean", "meanstd", "hist")  # colour matching in Lab
MOUTH_MODES = ("swap", "plate")  # where the mouth interior comes from
