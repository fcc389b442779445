"""The demo's output read in a log: not wrapped at 80 columns, and the commands it runs write
their tables at the same width."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from retail_tools.terminal import LOG_WIDTH

STORY = """
import sys
from pathlib import Path
from retail_tools.demo import Step, run_demo
from retail_tools.demo.context import console

LINE = "load during the image rollout: " + "24927 requests in 25.0s, 0 failed; " * 3

def step(demo):
    console.print(LINE)
    demo.run("sh", "-c", "echo columns=$COLUMNS")

run_demo(Path(sys.argv[1]), story=(Step("A long line", "why", step),),
         teardown=Step("Clean up", "nothing", lambda demo: None))
"""


def test_a_demo_written_to_a_file_keeps_its_lines_whole(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if key != "COLUMNS"}
    result = subprocess.run(
        [sys.executable, "-c", STORY, str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=60,
    )
    lines = result.stdout.splitlines()
    assert [line for line in lines if line.startswith("load during")] == [
        "load during the image rollout: " + "24927 requests in 25.0s, 0 failed; " * 3
    ]
    assert f"columns={LOG_WIDTH}" in lines
