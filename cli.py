"""``facegraft <stage> ...``: the command line, made from the stage table
(``common/stage_table.py``).

Every stage takes its inputs and a shot folder, writes atomically, and exits with one
line ``facegraft: error: <file>: <cause>`` and status 1 when something is wrong (2 for a
malformed command line, 130 when interrupted).
"""

from __future__ import annotations

import sys

from .common.stage_entry import guarded, run_stage
from .common.stage_table import STAGES_BY_NAME, build_parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    return guarded(lambda: run_stage(STAGES_BY_NAME[args.stage], args))
