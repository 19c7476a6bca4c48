"""experiment=gpu_speedrun measured on this machine's device (a CUDA GPU when there is one, else the
CPU): the Lightning path against its plain-loop twin, each lever of the recipe, and a profiler's view
of the steps. Every clock is read after a CUDA synchronisation (benchmarks/speed_probe.py).

    uv run python benchmarks/gpu_speedrun.py [--smoke] [--json FILE] [hydra overrides]
    uv run python benchmarks/gpu_speedrun.py --levers [--budget SECONDS] [--smoke] [--json FILE] [overrides]
    uv run python benchmarks/gpu_speedrun.py --profile [--trace FILE.json.gz] [--smoke] [--json FILE] [overrides]

Lightning against the plain loop (the default): the plain loop is the recipe without Lightning: the
same data module (every split one tensor on the device, the same batches in the same order, the same
augmentation and normalisation), the same network, optimiser and one-cycle schedule over the same
steps, the same precision, memory layout and compile settings. Each trains the recipe's whole
schedule with validation off; images/s counts the steps after the first WARMUP (where compilation
and autotuning happen). Alternating rounds; medians and the ratio.

``--levers``: one whole run of the recipe per lever (seed 1: training, its validation at the end,
the official test set), each changing one setting: training seconds with the first step apart,
images/s after it, test accuracy. Cheapest first; with ``--budget``, a lever that would start after
that many seconds is skipped, and the JSON is rewritten after each lever.

``--profile``: torch.profiler over PROFILE_STEPS steps of each loop after warm-up: per step the
wall time, the CPU's time in CUDA's API (kernel launches; waits for the GPU), the rest of the CPU's
time (Python and the framework), the GPU's kernel time; the operators that take most. ``--trace``: Lightning's
trace, gzipped, for Perfetto or chrome://tracing.

``--smoke``: one epoch of a few batches, one round, compilation by the eager backend (it traces, it
does not compile): a check that every path runs; its figures mean nothing.
"""

from __future__ import annotations

import gzip
import itertools
import json
import math
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from omegaconf import DictConfig
from torch.autograd import DeviceType

from common import alternate, argument_parser, default_device, device_note, load_on_device, plain_loop_rate
from common import project_config as compose_config
from mnist_budget.data.datamodule import EpochBatches, index_loader
from mnist_budget.errors import first_line
from mnist_budget.files import write_atomically
from mnist_budget.hardware import compile_mode, run_settings
from mnist_budget.training.builders import build_datamodule, build_trainer
from mnist_budget.training.module import Classifier
from speed_probe import SpeedProbe, synchronized_clock

RECIPE = "experiment=gpu_speedrun"
ROUNDS, WARMUP = 3, 5  # Lightning against the plain loop: rounds, and the untimed steps of each run
PROFILE_WARMUP, PROFILE_STEPS = 10, 20
TOP_OPERATORS = 12
# One epoch of a few batches, evaluation on one batch, torch.compile tracing only.
SMOKE_OVERRIDES = (
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=3",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "data.eval_batch_size=200",
    "callbacks.compile.backend=eager",
)
# The twin and the profile train without validation or checkpoints: only the steps are compared.
STEPS_ONLY = ("trainer.limit_val_batches=0", "~callbacks.model_checkpoint", "~callbacks.last_checkpoint")


def project_config(*overrides: str) -> DictConfig:
    """The recipe's config (experiment=gpu_speedrun), then ``overrides``."""
    return compose_config(RECIPE, *overrides)


def settings_of(cfg: DictConfig) -> dict[str, Any]:
    """What a run of ``cfg`` uses here: device, precision, layout, torch.compile's mode (None: eager)."""
    settings = run_settings(cfg)
    compiled = cfg.callbacks.get("compile") or {}
    mode = compile_mode(compiled.get("mode"), bool(compiled.get("cuda_graphs")), settings.device)
    return {
        "device": settings.device,
        "precision": settings.precision,
        "layout": settings.layout,
        "compile": mode,
        "compile_backend": compiled.get("backend", "inductor") if mode else None,
        "cudnn_benchmark": cfg.trainer.get("benchmark"),
        "batch_size": cfg.data.batch_size,
        "lr": cfg.optim.lr,
        "epochs": cfg.trainer.max_epochs,
    }


def batches_per_epoch(cfg: DictConfig, train_size: int) -> int:
    """Training batches per epoch as Lightning counts them (``trainer.limit_train_batches`` included)."""
    batches = math.ceil(train_size / cfg.data.batch_size)
    limit = cfg.trainer.limit_train_batches
    if isinstance(limit, int) and not isinstance(limit, bool):
        return min(batches, limit)
    return max(1, int(batches * float(limit)))


def recipe_batches(datamodule, epochs: int, per_epoch: int):
    """The training batches of ``epochs`` epochs in the order a run of the data module trains them:
    each epoch's order a function of (shuffle seed, epoch), through the same index loader."""
    train = datamodule.splits["train"]
    now = [0]  # the epoch, which the sampler asks for as each pass starts
    order = EpochBatches(
        len(train),
        datamodule.batch_size,
        datamodule.shuffle,
        datamodule.shuffle_seed,
        lambda: now[0],
        device=train.tensors[0].device,
    )
    for epoch in range(epochs):
        now[0] = epoch
        yield from itertools.islice(index_loader(train, order), per_epoch)


def plain_run(cfg: DictConfig, datamodule, warmup: int) -> float:
    """Images/s of the plain loop over the recipe's whole schedule, after ``warmup`` untimed steps."""
    settings = settings_of(cfg)
    if settings["precision"] not in ("bf16-mixed", "32-true"):
        raise SystemExit(
            f"error: the plain loop runs bf16-mixed or 32-true, not {settings['precision']}: "
            "add trainer.precision=32-true (or bf16-mixed)"
        )
    if cfg.optim.get("scheduler") and cfg.optim.get("interval", "epoch") != "step":
        raise SystemExit("error: the plain loop steps its schedule after every step: use an optim with interval: step")
    torch._dynamo.reset()
    L.seed_everything(cfg.seed, verbose=False)
    epochs, per_epoch = cfg.trainer.max_epochs, batches_per_epoch(cfg, len(datamodule.splits["train"]))
    total = epochs * per_epoch
    return plain_loop_rate(
        Classifier.from_config(cfg).train().to(default_device()),
        recipe_batches(datamodule, epochs, per_epoch),
        lambda images: datamodule.prepare_images(images, augment=True),
        channels_last=settings["layout"] == "channels_last",
        bf16=settings["precision"] == "bf16-mixed",
        compile_=settings["compile"] or False,
        backend=settings["compile_backend"] or "inductor",
        warmup=warmup,
        steps=total - warmup,
        schedule_steps=total,
    )


def lightning_run(cfg: DictConfig, datamodule, warmup: int, *callbacks: Callback) -> SpeedProbe:
    """One fit of the project's Lightning path on ``datamodule``; its probe holds the figures."""
    torch._dynamo.reset()
    L.seed_everything(cfg.seed, verbose=False)
    probe = SpeedProbe(warmup=warmup)
    build_trainer(cfg, probe, *callbacks).fit(Classifier.from_config(cfg), datamodule=datamodule)
    return probe


def compare(overrides: list[str], smoke: bool) -> dict[str, Any]:
    """Lightning against the plain loop (the module's docstring): medians of alternating rounds."""
    rounds, warmup = (1, 1) if smoke else (ROUNDS, WARMUP)
    cfg = project_config(*STEPS_ONLY, *(SMOKE_OVERRIDES if smoke else ()), *overrides)
    datamodule = build_datamodule(cfg)
    load_on_device(datamodule)
    steps = cfg.trainer.max_epochs * batches_per_epoch(cfg, len(datamodule.splits["train"]))
    if steps <= warmup:
        raise SystemExit(f"error: the run has {steps} steps, no more than the {warmup} untimed: train longer")
    plain, lightning = alternate(
        rounds,
        ("plain", lambda: plain_run(cfg, datamodule, warmup)),
        ("lightning", lambda: lightning_run(cfg, datamodule, warmup).figures()["steady_images_per_s"]),
    )
    print(
        f"\n{device_note(cfg)}; batch {cfg.data.batch_size}, {steps - warmup} timed steps of {steps}, {rounds} rounds"
    )
    print(f"plain PyTorch loop: {plain:8.0f} images/s (median)")
    print(f"project Lightning:  {lightning:8.0f} images/s (median)")
    print(f"Lightning/plain = {lightning / plain:.3f}")
    return {
        "settings": settings_of(cfg),
        "steps": steps,
        "warmup_steps": warmup,
        "rounds": rounds,
        "plain_images_per_s": plain,
        "lightning_images_per_s": lightning,
        "lightning_over_plain": lightning / plain,
    }


def lever_list(cfg: DictConfig) -> list[tuple[str, list[str]]]:
    """Each lever: a name and the overrides that set it on the recipe, cheapest to measure first."""
    batch, lr = cfg.data.batch_size, cfg.optim.lr
    return [
        ("the recipe", []),
        (f"batch {batch // 2}, lr {lr / 2:g}", [f"data.batch_size={batch // 2}", f"optim.lr={lr / 2:g}"]),
        (f"batch {batch * 2}, lr {lr * 2:g}", [f"data.batch_size={batch * 2}", f"optim.lr={lr * 2:g}"]),
        ("fp32 (trainer.precision=32-true)", ["trainer.precision=32-true"]),
        ("NCHW (callbacks.memory_format.layout=contiguous)", ["callbacks.memory_format.layout=contiguous"]),
        ("cudnn.benchmark off (trainer.benchmark=false)", ["trainer.benchmark=false"]),
        ("validation every epoch (trainer.check_val_every_n_epoch=1)", ["trainer.check_val_every_n_epoch=1"]),
        ("torch.compile default (callbacks.compile.mode=default)", ["callbacks.compile.mode=default"]),
        ("CUDA graphs (callbacks.compile.cuda_graphs=true)", ["callbacks.compile.cuda_graphs=true"]),
        (
            "torch.compile max-autotune, CUDA graphs",
            ["callbacks.compile.mode=max-autotune", "callbacks.compile.cuda_graphs=true"],
        ),
    ]


def recipe_run(cfg: DictConfig) -> dict[str, Any]:
    """One whole run of ``cfg`` through the project's path: fit, then the official test set."""
    torch._dynamo.reset()
    L.seed_everything(cfg.seed, verbose=False)
    datamodule, module = build_datamodule(cfg), Classifier.from_config(cfg)
    probe = SpeedProbe()
    trainer = build_trainer(cfg, probe)
    trainer.fit(module, datamodule=datamodule)
    (test,) = trainer.test(module, datamodule=datamodule, verbose=False)
    return {**probe.figures(), "test_acc": test["test/acc"]}


def levers(overrides: list[str], smoke: bool, budget: float | None, out: Path | None) -> dict[str, Any]:
    """Each lever a whole run (the module's docstring); the JSON rewritten after each one."""
    base = [*(SMOKE_OVERRIDES if smoke else ()), "seed=1", *overrides]
    rows: list[dict[str, Any]] = []
    result = {"seed": 1, "rows": rows}
    start = time.perf_counter()
    for name, lever in lever_list(project_config(*base)):
        row: dict[str, Any] = {"lever": name, "overrides": lever}
        if budget is not None and time.perf_counter() - start > budget:
            row["skipped"] = f"the levers' budget of {budget:g} s was spent"
        else:
            cfg = project_config(*base, *lever)
            row["settings"] = settings_of(cfg)
            try:
                row.update(recipe_run(cfg))
            except Exception as err:  # noqa: BLE001 - a lever that fails (say CUDA graphs) is a result; the rest go on
                row["error"] = f"{type(err).__name__}: {first_line(err)}"
        rows.append(row)
        print(lever_line(row), flush=True)
        if out is not None:
            write_atomically(out, json.dumps(result, indent=2) + "\n")
    print(f"\n{device_note(project_config(*base))}; seed 1, each row one whole run of the recipe")
    return result


def lever_line(row: dict[str, Any]) -> str:
    if "skipped" in row or "error" in row:
        return f"{row['lever']:60s} {row.get('skipped') or row.get('error')}"
    rate = row["steady_images_per_s"]
    return (
        f"{row['lever']:60s} train {row['train_s']:7.2f} s (first step {row['first_step_s']:6.2f} s), "
        f"{rate or 0:9.0f} images/s after it, validation {row['val_s']:5.2f} s, test {100 * row['test_acc']:.2f} %"
    )


class ProfileWindow:
    """torch.profiler over a window of steps, its wall time read after a CUDA synchronisation."""

    def __init__(self, device: str) -> None:
        self.activities = [torch.profiler.ProfilerActivity.CPU]
        if device == "cuda":
            self.activities.append(torch.profiler.ProfilerActivity.CUDA)
        self.profiler: torch.profiler.profile | None = None
        self.running = False
        self.wall_s = 0.0
        self._start = 0.0

    def start(self) -> None:
        self.profiler = torch.profiler.profile(activities=self.activities)
        self._start = synchronized_clock()
        self.profiler.start()
        self.running = True

    def stop(self) -> None:
        if self.running:
            self.wall_s = synchronized_clock() - self._start
            self.profiler.stop()
            self.running = False


class ProfileSteps(Callback):
    """Profiles Lightning's training steps ``start`` .. ``start + steps - 1``."""

    def __init__(self, window: ProfileWindow, start: int, steps: int) -> None:
        self.window, self.start, self.steps, self.done = window, start, steps, 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.done == self.start:
            self.window.start()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.done += 1
        if self.done == self.start + self.steps:
            self.window.stop()


def profiled(batches, window: ProfileWindow, start: int, steps: int):
    """The plain loop's batches, the profiler on from batch ``start`` until batch ``start + steps`` is asked for
    (the plain loop asks for the next batch once a step is done)."""
    for i, batch in enumerate(batches):
        if i == start:
            window.start()
        if i == start + steps:
            window.stop()
        yield batch
    window.stop()  # the batches ran out with the window's last step


def device_time(event) -> float:
    """An averaged event's own time on the GPU, in µs (the attribute's name changed in torch 2.4)."""
    return float(getattr(event, "self_device_time_total", None) or getattr(event, "self_cuda_time_total", 0) or 0)


def breakdown(window: ProfileWindow, steps: int) -> dict[str, Any]:
    """Per step: wall time, CPU time in CUDA's launch calls and in waits for the GPU, the rest of the CPU's
    time (Python, the framework; on a CPU the arithmetic too), the GPU's kernel time; the operators that take most."""
    events = window.profiler.key_averages()
    host = [e for e in events if e.device_type == DeviceType.CPU]
    kernels = [e for e in events if e.device_type == DeviceType.CUDA]  # the GPU's own events: kernels, copies
    launch = [e for e in host if "Launch" in e.key and e.key.startswith("cu")]  # cudaLaunchKernel, cudaGraphLaunch, ...
    waits = [e for e in host if "Synchronize" in e.key and e.key.startswith("cu")]
    per_step = 1000 * steps  # µs over the window -> ms per step
    wall_ms = window.wall_s * 1000 / steps
    launch_ms = sum(e.self_cpu_time_total for e in launch) / per_step
    wait_ms = sum(e.self_cpu_time_total for e in waits) / per_step
    kernel_ms = sum(device_time(e) for e in kernels) / per_step

    def top(chosen, key) -> list[dict[str, Any]]:
        chosen = sorted((e for e in chosen if key(e) > 0), key=key, reverse=True)[:TOP_OPERATORS]
        return [{"name": e.key, "calls_per_step": e.count / steps, "ms_per_step": key(e) / per_step} for e in chosen]

    return {
        "steps": steps,
        "wall_ms_per_step": wall_ms,
        "launches_per_step": sum(e.count for e in launch) / steps,
        "launch_ms_per_step": launch_ms,
        "gpu_wait_ms_per_step": wait_ms,
        "other_cpu_ms_per_step": max(
            0.0, wall_ms - launch_ms - wait_ms
        ),  # Python, the framework (a CPU: the arithmetic too)
        "gpu_kernel_ms_per_step": kernel_ms,
        "top_cpu": top(host, lambda e: e.self_cpu_time_total),
        "top_gpu": top(kernels, device_time),
    }


def profile(overrides: list[str], smoke: bool, trace: Path | None) -> dict[str, Any]:
    """Both loops under torch.profiler (the module's docstring)."""
    start, steps = (1, 2) if smoke else (PROFILE_WARMUP, PROFILE_STEPS)
    cfg = project_config(
        *STEPS_ONLY,
        *(SMOKE_OVERRIDES if smoke else ()),
        "trainer.max_epochs=1",
        f"trainer.limit_train_batches={start + steps}",
        *overrides,
    )
    datamodule = build_datamodule(cfg)
    load_on_device(datamodule)
    device = settings_of(cfg)["device"]
    result: dict[str, Any] = {"settings": settings_of(cfg)}

    window = ProfileWindow(device)
    lightning_run(cfg, datamodule, 1, ProfileSteps(window, start, steps))
    result["lightning"] = breakdown(window, steps)
    if trace is not None:
        with tempfile.TemporaryDirectory() as scratch:
            raw = Path(scratch) / "trace.json"
            window.profiler.export_chrome_trace(str(raw))
            with raw.open("rb") as source, gzip.open(trace, "wb") as target:
                shutil.copyfileobj(source, target)
        result["trace"] = trace.name

    window = ProfileWindow(device)
    per_epoch = batches_per_epoch(cfg, len(datamodule.splits["train"]))
    settings = settings_of(cfg)
    torch._dynamo.reset()
    L.seed_everything(cfg.seed, verbose=False)
    plain_loop_rate(
        Classifier.from_config(cfg).train().to(default_device()),
        profiled(recipe_batches(datamodule, 1, per_epoch), window, start, steps),
        lambda images: datamodule.prepare_images(images, augment=True),
        channels_last=settings["layout"] == "channels_last",
        bf16=settings["precision"] == "bf16-mixed",
        compile_=settings["compile"] or False,
        backend=settings["compile_backend"] or "inductor",
        warmup=start,
        steps=steps,
    )
    result["plain"] = breakdown(window, steps)
    print(f"\n{device_note(cfg)}; {steps} profiled steps after {start}, batch {cfg.data.batch_size}")
    for loop in ("lightning", "plain"):
        part = result[loop]
        print(
            f"{loop:9s}: {part['wall_ms_per_step']:.2f} ms a step: launches {part['launch_ms_per_step']:.2f} ms "
            f"({part['launches_per_step']:.0f}), waiting for the GPU {part['gpu_wait_ms_per_step']:.2f} ms, "
            f"the rest of the CPU {part['other_cpu_ms_per_step']:.2f} ms; "
            f"GPU kernels {part['gpu_kernel_ms_per_step']:.2f} ms"
        )
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argument_parser(__doc__)
    parser.add_argument("--levers", action="store_true", help="measure each lever of the recipe")
    parser.add_argument("--profile", action="store_true", help="profile both loops' steps")
    parser.add_argument("--budget", type=float, default=None, help="--levers: start no lever after these seconds")
    parser.add_argument("--trace", type=Path, default=None, help="--profile: write Lightning's trace here (.json.gz)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here as JSON")
    args = parser.parse_intermixed_args(argv)
    if args.levers and args.profile:
        parser.error("--levers and --profile are two runs: give one")
    if args.levers:
        result = levers(args.overrides, args.smoke, args.budget, args.json)
    elif args.profile:
        result = profile(args.overrides, args.smoke, args.trace)
    else:
        result = compare(args.overrides, args.smoke)
    if args.json is not None:
        write_atomically(args.json, json.dumps({**result, "smoke": args.smoke}, indent=2) + "\n")


if __name__ == "__main__":
    main()
