"""What the training device can do, and the precision, memory layout and threads chosen for it.

A CPU without native bf16 (AVX2 only: no avx512_bf16, no AMX) emulates bf16 autocast, which
makes a training step slower than fp32; a CPU or GPU with native bf16 runs it faster than fp32.
So ``trainer.precision: auto`` and ``callbacks.memory_format.layout: auto`` are resolved here,
from what torch reports about the device, before the Trainer is built. An explicit value always
wins. The measurements behind each rule are in docs/performance.md.
"""

from __future__ import annotations

import os
import platform
from functools import cache
from pathlib import Path
from typing import Any, NamedTuple

import torch
from hydra.core.hydra_config import HydraConfig

from mnist_budget.errors import UserError
from mnist_budget.rules import in_multirun

AUTO = "auto"
LAYOUTS = ("channels_last", "contiguous")


def device_type(accelerator: str) -> str:
    """The torch device type a Trainer with this ``accelerator`` trains on: cpu, cuda or mps."""
    accelerator = str(accelerator).lower()
    if accelerator in ("gpu", "cuda"):
        if not torch.cuda.is_available():
            build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "no CUDA support"
            raise UserError(
                f"trainer.accelerator={accelerator} but torch sees no CUDA GPU here (torch {torch.__version__}, "
                f"{build}): use trainer.accelerator=auto (GPU when there is one, else CPU) or cpu"
            )
        return "cuda"
    if accelerator == AUTO:
        if torch.cuda.is_available():
            return "cuda"
        if torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    return accelerator


def flush_denormals(on: bool) -> None:
    """Compute denormal floats as zero on the CPU (x86 FTZ/DAZ, ARM FZ; ``flush_denormal`` in
    conf/config.yaml), or not.

    A denormal operand costs x86 cores many times a normal one, and gradients that shrink towards
    the end of a long run go denormal (docs/performance.md, levers). Flushing changes results only
    where a value is below 1.2e-38. run.py sets it at the start of each process, before training
    starts its threads: set in a process that has already trained, it does not reach the threads
    that run the backward pass.
    """
    torch.set_flush_denormal(on)


def cpu_has_native_bf16() -> bool:
    """True where oneDNN runs bf16 natively (avx512_bf16 or AMX), False where it would emulate it.

    oneDNN's own answer honours ``ONEDNN_MAX_CPU_ISA``, so ``ONEDNN_MAX_CPU_ISA=AVX2`` makes a newer
    CPU report what an AVX2-only one would.
    """
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch build without oneDNN: bf16 is not native
        return False


def cuda_has_native_bf16() -> bool:
    return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)


def cuda_has_tensor_cores() -> bool:
    return torch.cuda.is_available() and torch.cuda.get_device_capability() >= (7, 0)


def resolve_precision(requested: str | int, device: str) -> str:
    """``auto`` -> bf16-mixed where the device runs bf16 natively, else 16-mixed on a GPU with
    tensor cores, else 32-true. Anything else is returned unchanged (an explicit choice wins)."""
    if str(requested) != AUTO:
        return str(requested)
    if device == "cuda":
        if cuda_has_native_bf16():
            return "bf16-mixed"
        return "16-mixed" if cuda_has_tensor_cores() else "32-true"
    if device == "cpu" and cpu_has_native_bf16():
        return "bf16-mixed"
    return "32-true"


def resolve_layout(requested: str, device: str) -> str:
    """``auto`` -> channels_last (NHWC) on a CPU or a CUDA GPU (cuDNN's preferred layout), contiguous
    (NCHW) elsewhere (MPS). On a CPU the default network trains faster in NHWC, with native bf16
    and limited to AVX2 alike (docs/performance.md, levers)."""
    if requested == AUTO:
        return "channels_last" if device in ("cpu", "cuda") else "contiguous"
    if requested not in LAYOUTS:
        raise UserError(f"callbacks.memory_format.layout={requested} is unknown: use auto, {' or '.join(LAYOUTS)}")
    return requested


def compile_mode(mode: str | None, cuda_graphs: bool, device: str) -> str | None:
    """torch.compile's ``mode`` for ``callbacks.compile`` (``mode``, ``cuda_graphs``) on ``device``;
    ``None``: the network is not compiled.

    CUDA graphs come through torch.compile: ``reduce-overhead`` is its default mode with them and
    ``max-autotune`` its autotuned mode with them (``max-autotune-no-cudagraphs`` without). A device
    other than a CUDA GPU has no CUDA graphs, so there the switch keeps the mode and drops the graphs.
    """
    if mode is None and not cuda_graphs:
        return None
    graphs = cuda_graphs and device == "cuda"
    if mode in (None, "default"):
        return "reduce-overhead" if graphs else "default"
    if mode == "max-autotune":
        return "max-autotune" if graphs else "max-autotune-no-cudagraphs"
    raise UserError(f"callbacks.compile.mode={mode} is unknown: use null (no compile), default or max-autotune")


@cache
def cpu_model() -> str:
    """The CPU's marketing name (Linux: /proc/cpuinfo, elsewhere what the platform module knows)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown CPU"


def describe(device: str) -> dict[str, Any]:
    """The hardware facts a run records: device name, threads, CPU vector ISA and native bf16."""
    facts: dict[str, Any] = {
        "device": device,
        "cpu": cpu_model(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_native_bf16": cpu_has_native_bf16(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }
    if device == "cuda" and torch.cuda.is_available():
        facts["gpu"] = torch.cuda.get_device_name()
        facts["gpu_native_bf16"] = cuda_has_native_bf16()
    if os.environ.get("ONEDNN_MAX_CPU_ISA"):
        facts["onednn_max_cpu_isa"] = os.environ["ONEDNN_MAX_CPU_ISA"]
    return facts


def hardware_line(facts: dict[str, Any]) -> str:
    """One line for logs and benchmark output, e.g.
    ``Intel(R) Xeon(R) Processor (AVX2, no native bf16), 2 threads, torch 2.15.0``."""
    bf16 = "native bf16" if facts["cpu_native_bf16"] else "no native bf16"
    line = f"{facts['cpu']} ({facts['cpu_capability']}, {bf16}), {facts['threads']} threads, torch {facts['torch']}"
    if "gpu" in facts:
        line = f"{facts['gpu']} ({'native bf16' if facts['gpu_native_bf16'] else 'no native bf16'}); host {line}"
    return line


class RunSettings(NamedTuple):
    device: str  # cpu, cuda or mps
    precision: str  # one of Lightning's precisions, ``auto`` resolved
    layout: str  # channels_last or contiguous


def run_settings(cfg: Any) -> RunSettings:
    """Device type, precision and memory layout that a run of ``cfg`` uses here (``auto`` resolved).

    Computed once per task and handed to what needs it (mnist_budget.training.builders.build_trainer)."""
    device = device_type(cfg.trainer.accelerator)
    memory_format = (cfg.get("callbacks") or {}).get("memory_format")
    layout = resolve_layout(memory_format.layout, device) if memory_format else "contiguous"
    return RunSettings(device, resolve_precision(cfg.trainer.precision, device), layout)


def available_cores() -> int:
    """The cores this process may use: a SLURM job's CPUs (``SLURM_CPUS_PER_TASK``, which a cluster
    without CPU binding does not enforce), else the process's CPU affinity."""
    if os.environ.get("SLURM_CPUS_PER_TASK", "").isdigit():
        return int(os.environ["SLURM_CPUS_PER_TASK"])
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def parallel_jobs() -> int:
    """How many jobs of this sweep run at once on this machine (the joblib launcher's n_jobs, else 1)."""
    if not in_multirun():
        return 1
    jobs = HydraConfig.get().launcher.get("n_jobs")
    if jobs is None:
        return 1
    return available_cores() if int(jobs) < 1 else int(jobs)  # joblib's -1: as many as cores


def cpu_processes(trainer: Any) -> int:
    """Training processes on this machine's CPU: trainer.devices under CPU DDP (trainer=ddp_cpu), else 1."""
    devices = trainer.get("devices", 1)
    if str(trainer.get("accelerator")) == "cpu" and isinstance(devices, int) and devices > 1:
        return devices
    return 1


def set_threads(requested: int | str, trainer: Any) -> int:
    """torch's thread count: ``auto`` shares the cores among the processes that train at once
    (parallel sweep jobs, CPU DDP processes); a number is used as is. Processes that each start one
    thread per core fight over the cores (docs/scale-out.md, "Parallel jobs on one machine")."""
    if str(requested) == "auto":
        threads = max(1, available_cores() // (parallel_jobs() * processes_per_task(trainer)))
    else:
        threads = int(requested)
    if threads != torch.get_num_threads():
        torch.set_num_threads(threads)
    return threads


def processes_per_task(trainer: Any) -> int:
    """The training processes that share this process's cores: one per SLURM task when ``srun``
    started several (each task is one DDP process with its own CPUs), else ``cpu_processes``."""
    if int(os.environ.get("SLURM_NTASKS", "1")) > 1:
        return 1
    return cpu_processes(trainer)
