"""The device check's two ends (benchmarks/gpu_check.sh): the machine's facts first, every step's
figures gathered into one JSON and one Markdown file last.

    python benchmarks/gpu_report.py facts FILE.json   # prints the GPU line, writes the facts
    python benchmarks/gpu_report.py report WORK OUT   # WORK: gpu_check.sh's scratch folder; writes
                                                      # OUT/gpu_check.json and OUT/gpu_check.md

What ``report`` reads in WORK: steps.tsv (each step's name, budget, seconds, exit status),
facts.json, default/ (the run of ``python run.py``), speedrun/<n>/ (one run folder per seed, each
with results.json and the probe's speed.json), levers.json, twin.json, profile.json, tests.log. A
step that did not finish leaves its part out; the Markdown says which.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
from pathlib import Path
from typing import Any

from mnist_budget.files import write_atomically

TARGET_ACC, TARGET_S, BAR_S = 0.994, 1.0, 3.0  # the target: every seed >= 99.4 %, median <= 1 s (bar: 3 s)


def facts(path: Path) -> None:
    """The machine: GPU (nvidia-smi and torch), torch, CUDA, cuDNN, Lightning, the precision and
    layout that ``auto`` resolves to; printed as one line and written to ``path``."""
    import lightning
    import torch

    from mnist_budget.hardware import describe, device_type, hardware_line, resolve_layout, resolve_precision

    device = device_type("auto")
    found: dict[str, Any] = {
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "lightning": lightning.__version__,
        "device": device,
        "precision_auto": resolve_precision("auto", device),
        "layout_auto": resolve_layout("auto", device),
        "hardware": describe(device),
    }
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        found["gpu"] = {
            "name": props.name,
            "capability": f"{props.major}.{props.minor}",
            "multiprocessors": props.multi_processor_count,
            "memory_gib": round(props.total_memory / 2**30, 1),
        }
    try:
        smi = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        found["nvidia_smi"] = smi.stdout.strip() or smi.stderr.strip()
    except (OSError, subprocess.TimeoutExpired) as err:
        found["nvidia_smi"] = f"not run: {err}"
    found["line"] = (
        f"{hardware_line(found['hardware'])}; CUDA {found['cuda']}, cuDNN {found['cudnn']}, Lightning "
        f"{found['lightning']}; auto: precision {found['precision_auto']}, layout {found['layout_auto']}"
    )
    print(f"nvidia-smi: {found['nvidia_smi']}")
    print(f"device: {found['line']}")
    write_atomically(path, json.dumps(found, indent=2) + "\n")


def read_json(path: Path) -> Any:
    return json.loads(path.read_text()) if path.is_file() else None


def fmt(value: Any, digits: int = 2, scale: float = 1.0, unit: str = "") -> str:
    return "—" if value is None else f"{value * scale:,.{digits}f}{unit}"


def percent(value: Any) -> str:
    return fmt(value, 2, 100, " %")


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def steps_of(work: Path) -> list[dict[str, Any]]:
    lines = (work / "steps.tsv").read_text().splitlines() if (work / "steps.tsv").is_file() else []
    rows = []
    for line in lines:
        name, budget, seconds, status = line.split("\t")
        rows.append({"step": name, "budget_s": int(budget), "seconds": int(seconds), "exit": int(status)})
    return rows


def default_run(folder: Path) -> dict[str, Any] | None:
    """``python run.py``'s results and the log lines that say which device, precision and layout it chose."""
    results = read_json(folder / "results.json")
    if results is None:
        return None
    log = (folder / "run.log").read_text(errors="replace") if (folder / "run.log").is_file() else ""
    said = [m.group(1) for m in re.finditer(r"\] - ((?:hardware: |GPU available).*)$", log, re.M)]
    keep = ("test_acc", "best_val_acc", "eval_tta", "epochs", "train_seconds", "precision", "memory_layout", "hardware")
    return {**{key: results.get(key) for key in keep}, "log": said}


def speedrun(sweep: Path) -> dict[str, Any] | None:
    """The five seeds of experiment=gpu_speedrun: each one's results and probe, the medians, the verdict."""
    seeds = []
    for folder in sorted(sweep.glob("*/"), key=lambda path: (len(path.name), path.name)):
        results, speed = read_json(folder / "results.json"), read_json(folder / "speed.json")
        if results is None:
            continue
        seeds.append(
            {
                "seed": results["seed"],
                "test_acc": results["test_acc"],
                "results_train_seconds": results["train_seconds"],
                "precision": results["precision"],
                "memory_layout": results["memory_layout"],
                **(speed or {}),
            }
        )
    if not seeds:
        return None
    train = [seed["train_s"] for seed in seeds if seed.get("train_s") is not None]
    after = [seed["after_first_s"] for seed in seeds if seed.get("after_first_s") is not None]
    median_s = statistics.median(train) if train else None
    every = all(seed["test_acc"] >= TARGET_ACC for seed in seeds)
    return {
        "seeds": seeds,
        "median_train_s": median_s,
        "median_after_first_s": statistics.median(after) if after else None,
        "every_seed_reached": every,
        "target_met": bool(every and median_s is not None and median_s <= TARGET_S),
        "bar_met": bool(every and median_s is not None and median_s <= BAR_S),
    }


def tests_line(path: Path) -> str | None:
    if not path.is_file():
        return None
    lines = [line for line in path.read_text(errors="replace").splitlines() if re.search(r"\d+ (passed|failed)", line)]
    return lines[-1].strip("= ") if lines else None


def markdown(report: dict[str, Any]) -> str:
    facts_ = report.get("facts") or {}
    out = ["# GPU check (benchmarks/gpu_check.sh)", ""]
    if report.get("smoke"):
        out += ["**A smoke run: every step shrunk to a few batches; no figure here means anything.**", ""]
    out += [f"Device: {facts_.get('line', '—')}", "", f"nvidia-smi: {facts_.get('nvidia_smi', '—')}", ""]
    out += ["## Steps", ""]
    out += table(
        ["step", "budget s", "took s", "exit"],
        [[s["step"], str(s["budget_s"]), str(s["seconds"]), str(s["exit"])] for s in report["steps"]],
    )
    out += ["", "Exit 124 or 137: the step ran out of its budget (what it finished is below).", ""]

    out += ["## `python run.py` (the default, unchanged)", ""]
    default = report.get("default")
    if default:
        out += [f"- {line}" for line in default["log"]]
        out += [
            f"- test accuracy {percent(default['test_acc'])} (official 10k, TTA {default['eval_tta']}), "
            f"{default['epochs']} epochs, {fmt(default['train_seconds'])} s of training (results.json), "
            f"precision {default['precision']}, layout {default['memory_layout']}",
        ]
    else:
        out += ["Not finished."]

    run = report.get("speedrun")
    seeds = ", ".join(str(seed["seed"]) for seed in run["seeds"]) if run else "1-5"
    out += ["", f"## `experiment=gpu_speedrun`, seeds {seeds}", ""]
    if run:
        out += table(
            ["seed", "test acc", "train s", "first step s", "after first s", "load s", "val s", "test s", "fit s"],
            [
                [
                    str(s["seed"]),
                    percent(s["test_acc"]),
                    fmt(s.get("train_s"), 3),
                    fmt(s.get("first_step_s"), 3),
                    fmt(s.get("after_first_s"), 3),
                    fmt(s.get("load_s"), 3),
                    fmt(s.get("val_s"), 3),
                    fmt(s.get("test_s"), 3),
                    fmt(s.get("fit_s"), 3),
                ]
                for s in run["seeds"]
            ],
        )
        verdict = "met" if run["target_met"] else ("bar met, target not" if run["bar_met"] else "not met")
        out += [
            "",
            f"Median training {fmt(run['median_train_s'], 3)} s ({fmt(run['median_after_first_s'], 3)} s after the "
            f"first step); every seed >= 99.4 %: {run['every_seed_reached']}. Target (every seed >= 99.4 %, "
            f"median <= {TARGET_S:g} s; bar {BAR_S:g} s): {verdict}.",
            "",
            "train s: first step's start to last step's end, CUDA-synchronised, validation excluded; the first step "
            "holds compilation and autotuning; load s: the splits read onto the device; val s, test s: evaluation "
            "with TTA.",
        ]
    else:
        out += ["Not finished."]

    out += ["", "## Levers (seed 1, one whole run each)", ""]
    levers = report.get("levers")
    if levers:
        rows = []
        for row in levers["rows"]:
            if "skipped" in row or "error" in row:
                rows.append([row["lever"], row.get("skipped") or row.get("error"), "", "", "", ""])
                continue
            rows.append(
                [
                    row["lever"],
                    fmt(row["train_s"], 3),
                    fmt(row["first_step_s"], 3),
                    fmt(row["steady_images_per_s"], 0),
                    fmt(row["val_s"], 3),
                    percent(row["test_acc"]),
                ]
            )
        out += table(["lever", "train s", "first step s", "images/s after it", "val s", "test acc"], rows)
    else:
        out += ["Not finished."]

    out += ["", "## Lightning against the plain loop (the same recipe)", ""]
    twin = report.get("twin")
    if twin:
        out += [
            f"Plain loop {fmt(twin['plain_images_per_s'], 0)} images/s, Lightning "
            f"{fmt(twin['lightning_images_per_s'], 0)} images/s (medians of {twin['rounds']} rounds, "
            f"{twin['steps'] - twin['warmup_steps']} timed steps of {twin['steps']}): Lightning/plain = "
            f"**{twin['lightning_over_plain']:.3f}** (target >= 0.8)."
        ]
    else:
        out += ["Not finished."]

    out += ["", "## Where a step's time goes (torch.profiler)", ""]
    prof = report.get("profile")
    if prof:
        parts = [("lightning", "Lightning"), ("plain", "plain loop")]
        out += table(
            [
                "loop",
                "ms a step",
                "launches",
                "launch ms",
                "waiting for the GPU ms",
                "rest of the CPU ms",
                "GPU kernels ms",
            ],
            [
                [
                    name,
                    fmt(prof[key]["wall_ms_per_step"], 3),
                    fmt(prof[key]["launches_per_step"], 0),
                    fmt(prof[key]["launch_ms_per_step"], 3),
                    fmt(prof[key]["gpu_wait_ms_per_step"], 3),
                    fmt(prof[key]["other_cpu_ms_per_step"], 3),
                    fmt(prof[key]["gpu_kernel_ms_per_step"], 3),
                ]
                for key, name in parts
            ],
        )
        out += ["", "Rest of the CPU: Python and the framework (on a CPU, the arithmetic too). Under the profiler."]
        for key, name in parts:
            for side, what in (("top_cpu", "CPU (self time)"), ("top_gpu", "GPU")):
                if prof[key][side]:
                    out += ["", f"{name}, {what}:", ""]
                    out += table(
                        ["operator", "calls a step", "ms a step"],
                        [
                            [f"`{op['name'][:80]}`", fmt(op["calls_per_step"], 1), fmt(op["ms_per_step"], 3)]
                            for op in prof[key][side]
                        ],
                    )
        if prof.get("trace"):
            out += ["", f"Lightning's trace: {prof['trace']} (Perfetto or chrome://tracing)."]
    else:
        out += ["Not finished."]

    out += ["", "## Tests on the device", "", report.get("tests") or "Not run or not finished."]
    out += [
        "",
        "## Not measured here",
        "",
        "`trainer=ddp`: one GPU has no second process to share the work with; DDP needs a machine with several.",
        "",
    ]
    return "\n".join(out)


def report(work: Path, out: Path, smoke: bool) -> None:
    """Gather every step's figures (the module's docstring) into OUT/gpu_check.json and OUT/gpu_check.md."""
    gathered = {
        "smoke": smoke,
        "steps": steps_of(work),
        "facts": read_json(work / "facts.json"),
        "default": default_run(work / "default"),
        "speedrun": speedrun(work / "speedrun"),
        "levers": read_json(work / "levers.json"),
        "twin": read_json(work / "twin.json"),
        "profile": read_json(work / "profile.json"),
        "tests": tests_line(work / "tests.log"),
    }
    write_atomically(out / "gpu_check.json", json.dumps(gathered, indent=2) + "\n")
    write_atomically(out / "gpu_check.md", markdown(gathered))
    print(f"report: {out / 'gpu_check.md'} and {out / 'gpu_check.json'}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("facts").add_argument("file", type=Path)
    gather = commands.add_parser("report")
    gather.add_argument("work", type=Path)
    gather.add_argument("out", type=Path)
    gather.add_argument("--smoke", action="store_true", help="mark the report as a smoke run's")
    args = parser.parse_args(argv)
    if args.command == "facts":
        facts(args.file)
    else:
        report(args.work, args.out, args.smoke)


if __name__ == "__main__":
    main()
