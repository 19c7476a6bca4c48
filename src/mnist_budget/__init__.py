"""mnist-budget: small, fast, honest MNIST classifiers (PyTorch Lightning + Hydra)."""

from mnist_budget.errors import UserError

__all__ = ["UserError"]
