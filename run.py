"""Command line: ``python run.py [group=option ...] [key=value ...]``; ``-m`` sweeps."""

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from mnist_budget.errors import UserError
from mnist_budget.tasks.train import train

CONF_DIR = Path(__file__).resolve().parent / "conf"


def check_group_choices(overrides: list[str], conf_dir: Path = CONF_DIR) -> None:
    """Name an unknown config-group option in one line (Hydra's own report runs to a screenful)."""
    for override in overrides:
        key, sep, value = override.lstrip("+~").partition("=")
        group_dir = conf_dir / key
        if not sep or not group_dir.is_dir() or "(" in value:  # not a group choice, or a sweep function
            continue
        options = sorted(path.stem for path in group_dir.glob("*.yaml"))
        for choice in value.split(","):
            if choice not in ("", "null") and choice not in options:
                raise UserError(f"unknown {key} option '{choice}': choose one of {', '.join(options)} (conf/{key}/)")


def find_user_error(err: BaseException) -> UserError | None:
    """The UserError behind ``err``: itself, or the cause that Hydra's instantiate wrapped."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        if isinstance(current, UserError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float:
    """Train one configuration; return ``optimized_metric`` so that sweepers can optimise it."""
    try:
        metrics = train(cfg)
    except Exception as err:  # noqa: BLE001 - a UserError may come wrapped (Hydra's instantiate)
        user_error = find_user_error(err)
        if user_error is None:
            raise
        print(f"error: {user_error}", file=sys.stderr)
        sys.exit(2)
    return metrics[cfg.optimized_metric]


if __name__ == "__main__":
    try:
        check_group_choices(sys.argv[1:])
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    main()
