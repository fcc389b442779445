"""Consoles that read well both on a terminal and in a log.

On a terminal rich takes the terminal's width. Written to a file or a pipe (a CI log,
``make demo > demo.log``) it would take 80 columns, and tables and long lines would wrap into
a log nobody reads well; there the console is ``LOG_WIDTH`` wide instead, unless ``COLUMNS``
says otherwise (rich reads it itself).
"""

from __future__ import annotations

import os
from typing import Any

from rich.console import Console

LOG_WIDTH = 160


def console(*, stderr: bool = False, **options: Any) -> Console:
    """A rich console for standard output (or ``stderr``) at the width that suits where it
    writes."""
    made = Console(stderr=stderr, **options)
    if not made.is_terminal and not os.environ.get("COLUMNS", "").isdigit():
        made.width = LOG_WIDTH
    return made
