"""``python -m retail_serving``: the serving image's command."""

from retail_serving.server import main

main()
