"""``python -m retail_operator``: the operator image's command."""

from retail_operator.runner import main

main()
