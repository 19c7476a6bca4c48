"""``task=serve``: the drawing page and the HTTP API for a trained checkpoint
(mnist_budget.inference.serving), on ``host:port`` until Ctrl-C (or SIGTERM)."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import torch
import uvicorn
from omegaconf import DictConfig
from uvicorn.supervisors import Multiprocess

from mnist_budget.files import write_atomically
from mnist_budget.inference.serving import SETTINGS_ENV, app_for, settings_of, tcp_listener

log = logging.getLogger(__name__)


def serve(cfg: DictConfig) -> dict[str, float]:
    """One process answers every request, or ``workers`` processes share the port."""
    settings = settings_of(cfg, cores=torch.get_num_threads())
    where = {"host": str(cfg.host), "port": int(cfg.port), "log_level": "warning"}
    log.info(
        "serving %s (%s backend%s, %d worker(s) of %d thread(s)) on http://%s:%d/ (API: POST /predict, docs: /docs)",
        cfg.ckpt_path,
        cfg.backend,
        ", TTA" if settings["tta"] else "",
        cfg.workers,
        settings["threads"],
        cfg.host,
        cfg.port,
    )
    if int(cfg.workers) == 1:
        uvicorn.run(app_for(settings), **where)
        return {}
    path = Path(cfg.paths.output_dir) / "serve_settings.json"
    write_atomically(path, json.dumps(settings, indent=2) + "\n")
    os.environ[SETTINGS_ENV] = str(path)
    config = uvicorn.Config(
        "mnist_budget.inference.serving:app_from_settings", factory=True, workers=int(cfg.workers), **where
    )
    Multiprocess(config, sockets=[tcp_listener(config)]).run()  # uvicorn.run with workers > 1, on a TCP listener
    return {}
