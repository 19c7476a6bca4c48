"""``python -m mnist_budget.reporting RUN_OR_SWEEP_DIR ...`` (mnist_budget.reporting.report)."""

from mnist_budget.reporting.report import main

main()
