"""Command line: ``python run.py [group=option ...] [key=value ...]``; ``-m`` sweeps."""

import sys

import hydra
from omegaconf import DictConfig

from mnist_budget.errors import UserError
from mnist_budget.tasks.train import train


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float:
    """Train one configuration; return ``optimized_metric`` so that sweepers can optimise it."""
    try:
        metrics = train(cfg)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    return metrics[cfg.optimized_metric]


if __name__ == "__main__":
    main()
