#!/usr/bin/env bash
# The GPU check in one call (docs/gpu.md): the machine, `python run.py` unchanged, experiment=gpu_speedrun
# over seeds 1-5, each lever of the recipe, Lightning against its plain-loop twin, a profiler's view of the
# steps and the quick tests that touch the device, each step under a time budget; every figure into
# $OUT/gpu_check.json and $OUT/gpu_check.md, the console into $OUT/gpu_check.log, Lightning's profiler
# trace into $OUT/trace_lightning.json.gz (four files: the device tool brings back at most eight).
#
#   bash benchmarks/gpu_check.sh [--smoke]
#
# --smoke: every step shrunk to a few batches (and 2 seeds), so that it runs on a CPU in a minute or two
# (tests/test_benchmarks.py runs it so in the slow suite); its figures mean nothing.
# Environment: OUT (default: a new temporary folder), PYTHON (default: python3), GPU_CHECK_STEPS (the steps
# to run, default all: facts default speedrun levers twin profile tests), MNIST_BUDGET_DATA (default: .whl/data
# when it holds MNIST/raw, as benchmarks/prepare_gpu_wheels.sh leaves it, else the project's rule).
# Packages: where hydra, omegaconf, kornia and mnist_budget import already, nothing is installed; else
# the wheels in .whl/ (benchmarks/prepare_gpu_wheels.sh) go into a temporary folder on PYTHONPATH.
set -uo pipefail
cd "$(dirname "$0")/.."

SMOKE=0
case "${1:-}" in
  --smoke) SMOKE=1 ;;
  "") ;;
  *) echo "error: unknown argument '$1': use --smoke or nothing" >&2; exit 2 ;;
esac
PYTHON=${PYTHON:-python3}
OUT=${OUT:-$(mktemp -d)}
STEPS=${GPU_CHECK_STEPS:-facts default speedrun levers twin profile tests}
mkdir -p "$OUT"
WORK=$(mktemp -d)  # run folders, checkpoints, the steps' own logs: nothing of it under $OUT
LOG=$OUT/gpu_check.log
: >"$LOG"
say() { echo "$*" | tee -a "$LOG"; }

# Budgets in seconds, each step's most (a step past it is stopped; what it wrote is kept). Together with
# installing the wheels they fit one device call of 8 minutes; each can be set from the environment
# (a second call that reruns one step with more time: GPU_CHECK_STEPS=levers BUDGET_LEVERS=400 ...).
scale=1
[ "$SMOKE" = 1 ] && scale=5  # a CPU shared with other work can be many times slower than an idle one
BUDGET_FACTS=${BUDGET_FACTS:-$((30 * scale))}
BUDGET_DEFAULT=${BUDGET_DEFAULT:-$((80 * scale))}
BUDGET_SPEEDRUN=${BUDGET_SPEEDRUN:-$((80 * scale))}
BUDGET_LEVERS=${BUDGET_LEVERS:-$((130 * scale))}
LEVERS_START_BY=${LEVERS_START_BY:-$((BUDGET_LEVERS * 7 / 10))}  # the levers' script starts no lever after this
BUDGET_TWIN=${BUDGET_TWIN:-$((50 * scale))}
BUDGET_PROFILE=${BUDGET_PROFILE:-$((40 * scale))}
BUDGET_TESTS=${BUDGET_TESTS:-$((50 * scale))}
SEEDS=1,2,3,4,5
SHRINK=()  # the smoke run's overrides of run.py
BENCH=()   # and of the benchmark script
TESTS=(-n 8 tests/test_hardware.py tests/test_configs.py tests/test_training.py tests/test_experiments.py)
if [ "$SMOKE" = 1 ]; then
  SEEDS=1,2
  SHRINK=(trainer.max_epochs=1 trainer.limit_train_batches=3 trainer.limit_val_batches=1 trainer.limit_test_batches=1
    data.eval_batch_size=200)
  BENCH=(--smoke)
  TESTS=(-n 0 tests/test_hardware.py)
fi

start_all=$SECONDS
if "$PYTHON" -c "import hydra, omegaconf, kornia, mnist_budget" >/dev/null 2>&1; then
  say "packages: hydra, omegaconf, kornia and mnist_budget import already: no wheel installed"
elif compgen -G ".whl/*.whl" >/dev/null; then
  SITE=$(mktemp -d)
  say "packages: installing $(ls .whl/*.whl | wc -l) wheels from .whl/ into $SITE"
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl \
    2>&1 | tee -a "$LOG"
  [ "${PIPESTATUS[0]}" = 0 ] || { say "error: the wheels in .whl/ did not install: rebuild them with benchmarks/prepare_gpu_wheels.sh"; exit 1; }
  export PYTHONPATH=$SITE${PYTHONPATH:+:$PYTHONPATH}
else
  say "error: hydra, omegaconf, kornia or mnist_budget does not import and .whl/ holds no wheels: run bash benchmarks/prepare_gpu_wheels.sh where pip reaches PyPI, and carry .whl"
  exit 2
fi
# The working tree's code wins over a wheel of the package built from an older tree; benchmarks/ holds the
# probe that the speedrun's runs load (+callbacks.speed_probe).
export PYTHONPATH=$PWD/src:$PWD/benchmarks${PYTHONPATH:+:$PYTHONPATH}
if [ -z "${MNIST_BUDGET_DATA:-}" ] && [ -d .whl/data/MNIST/raw ]; then
  export MNIST_BUDGET_DATA=$PWD/.whl/data
fi
export PYTHONUNBUFFERED=1
say "data: ${MNIST_BUDGET_DATA:-./data (the project default)}; scratch: $WORK; figures: $OUT"

failed=0
step() {  # step NAME BUDGET COMMAND...: run it under its budget, its output into the log and WORK/NAME.log
  local name=$1 budget=$2 began=$SECONDS status
  shift 2
  case " $STEPS " in
    *" $name "*) ;;
    *) say "== $name: not in GPU_CHECK_STEPS, skipped"; return ;;
  esac
  say "== $name (at most $budget s): $*"
  timeout --kill-after=10 "$budget" "$@" 2>&1 | tee -a "$LOG" "$WORK/$name.log"
  status=${PIPESTATUS[0]}
  printf '%s\t%s\t%s\t%s\n' "$name" "$budget" "$((SECONDS - began))" "$status" >>"$WORK/steps.tsv"
  say "== $name: exit $status after $((SECONDS - began)) s"
  [ "$status" = 0 ] || failed=$((failed + 1))
}

step facts "$BUDGET_FACTS" "$PYTHON" benchmarks/gpu_report.py facts "$WORK/facts.json"
step default "$BUDGET_DEFAULT" "$PYTHON" run.py "hydra.run.dir=$WORK/default" "${SHRINK[@]}"
step speedrun "$BUDGET_SPEEDRUN" "$PYTHON" run.py -m experiment=gpu_speedrun "seed=$SEEDS" "hydra.sweep.dir=$WORK/speedrun" \
  +callbacks.speed_probe._target_=speed_probe.SpeedProbe "${SHRINK[@]}"
step levers "$BUDGET_LEVERS" "$PYTHON" benchmarks/gpu_speedrun.py --levers --budget "$LEVERS_START_BY" \
  --json "$WORK/levers.json" "paths.output_dir=$WORK/bench" "${BENCH[@]}"
step twin "$BUDGET_TWIN" "$PYTHON" benchmarks/gpu_speedrun.py --json "$WORK/twin.json" "paths.output_dir=$WORK/bench" \
  "${BENCH[@]}"
step profile "$BUDGET_PROFILE" "$PYTHON" benchmarks/gpu_speedrun.py --profile --trace "$OUT/trace_lightning.json.gz" \
  --json "$WORK/profile.json" "paths.output_dir=$WORK/bench" "${BENCH[@]}"
step tests "$BUDGET_TESTS" "$PYTHON" -m pytest -q -p no:cacheprovider "${TESTS[@]}"

REPORT=()
[ "$SMOKE" = 1 ] && REPORT=(--smoke)
timeout 60 "$PYTHON" benchmarks/gpu_report.py report "$WORK" "$OUT" "${REPORT[@]}" 2>&1 | tee -a "$LOG"
[ "${PIPESTATUS[0]}" = 0 ] || failed=$((failed + 1))
say "gpu_check: $failed step(s) failed, $((SECONDS - start_all)) s in all; files in $OUT: $(cd "$OUT" && ls | tr '\n' ' ')"
rm -rf "$WORK"
[ "$failed" = 0 ]
