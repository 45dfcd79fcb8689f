"""The one error type FaceGraft raises for problems a user can fix."""

from __future__ import annotations


class FaceGraftError(Exception):
    """A user-facing failure: the message names the file and the cause on one line.

    The command line prints it as ``facegraft: error: <message>`` and exits with status 1;
    the add-on shows it as a Blender report.
    """
