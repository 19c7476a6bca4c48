"""Hyper-parameter search with Optuna, through the project's own Hydra sweeper (``sweeper``;
docs/search.md says why not hydra-optuna-sweeper): the search space from YAML (``space``), the
study in a storage that outlives the process, its trial accounting, heartbeats and retries
(``study``), and what a finished search shows (``report``).
The loop that runs trials is a task (mnist_budget.tasks.search); the Hydra plug-in that starts the
workers is hydra_plugins/mnist_budget_plugins.
"""
