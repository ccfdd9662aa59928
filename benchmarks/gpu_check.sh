#!/usr/bin/env bash
# GPU check of `llmtraces bench` (issue 12), for a machine with an NVIDIA GPU; under 8 minutes.
#
#   benchmarks/gpu_check.sh [vllm|llamacpp]        (default: vllm when MODEL is set, else llamacpp)
#   MODEL=/models/Qwen2.5-0.5B-Instruct benchmarks/gpu_check.sh vllm
#
# 1. `llmtraces bench env --json`: GPUs, driver, CUDA, engine versions as NVML and pip see them.
# 2. Idle-load-idle (10 s idle, 20 s of fp16 matmuls with torch, 10 s idle): the energy of the
#    whole pattern from NVML's energy counter (llmtraces' telemetry process) against the
#    integral of the sampled power; they must agree within 3 %. Also the counter's update
#    period and the idle power before and after.
# 3. `llmtraces bench capacity` of the packaged Azure code trace, --quick, --telemetry require
#    (for llamacpp, which runs on the CPU, with its lengths cut as bench_quick.py does).
# It ends with a Markdown block to paste into benchmarks/README.md. Without an NVIDIA GPU and
# driver it stops at once with exit status 2. Outputs go to $OUT (default: a new temp folder);
# SKIP_CAPACITY=1 skips step 3.
set -euo pipefail

ENGINE="${1:-}"
MODEL="${MODEL:-}"
PY="${PYTHON:-python}"
if [[ -z "$ENGINE" ]]; then
    if [[ -n "$MODEL" ]]; then ENGINE=vllm; else ENGINE=llamacpp; fi
fi
case "$ENGINE" in
    vllm) [[ -n "$MODEL" ]] || { echo "gpu_check: --engine vllm needs MODEL=<id or path>" >&2; exit 2; } ;;
    llamacpp) ;;
    *) echo "gpu_check: engine must be vllm or llamacpp (got '$ENGINE')" >&2; exit 2 ;;
esac
OUT="${OUT:-$(mktemp -d)/gpu-check}"
mkdir -p "$OUT"
START=$(date +%s)

if ! "$PY" - <<'PYEOF' >"$OUT/nvml-probe.txt" 2>&1
import sys
try:
    import pynvml
except ImportError:
    sys.exit("nvidia-ml-py is not installed: pip install 'llmtraces[gpu]'")
try:
    pynvml.nvmlInit()
except pynvml.NVMLError as exc:
    sys.exit(f"NVML is not available ({exc}): no NVIDIA driver or GPU on this machine")
n = pynvml.nvmlDeviceGetCount()
if n < 1:
    sys.exit("NVML found no GPU")
print(f"{n} GPU(s)")
PYEOF
then
    echo "gpu_check: this check needs an NVIDIA GPU: $(tail -n 1 "$OUT/nvml-probe.txt")" >&2
    exit 2
fi

echo "== 1/3 bench env" >&2
llmtraces bench env --json >"$OUT/env.json"
llmtraces bench env >&2

echo "== 2/3 idle-load-idle: energy counter against integrated power (about 45 s)" >&2
"$PY" - "$OUT/energy" >"$OUT/energy.json" <<'PYEOF'
import importlib.util, json, statistics, subprocess, sys, time
from pathlib import Path
from llmtraces.bench.telemetry import Telemetry
from llmtraces.bench.telemetry.energy import power_joules

out = Path(sys.argv[1])
IDLE_S, LOAD_S, INTERVAL = 10.0, 20.0, 0.1
LOAD = ("import sys, time, torch\n"
        "x = torch.randn(8192, 8192, device='cuda', dtype=torch.float16)\n"
        "end = time.monotonic() + float(sys.argv[1])\n"
        "while time.monotonic() < end:\n"
        "    y = x @ x\n"
        "    torch.cuda.synchronize()\n")
result = {"load": "torch fp16 matmul 8192^2" if importlib.util.find_spec("torch") else None}
with Telemetry(out, engine_pid=None, metrics_url=None, interval_s=INTERVAL, require=True,
               gpu_indices=[0]) as tel:
    t0 = time.monotonic()
    time.sleep(IDLE_S)
    t_load = time.monotonic()
    if result["load"]:
        subprocess.run([sys.executable, "-c", LOAD, str(LOAD_S)], check=True)
    else:
        time.sleep(LOAD_S)
    t_idle = time.monotonic()
    time.sleep(IDLE_S)
    t1 = time.monotonic()
energy = tel.energy(t0, t1)
g = tel.series()[0]
integral, notes = power_joules(g.t, g.power_w, t0, t1, INTERVAL)
changes = [t for t, a, b in zip(g.t[1:], g.energy_mj, g.energy_mj[1:])
           if a is not None and b is not None and b != a]
period = statistics.median(b - a for a, b in zip(changes, changes[1:])) if len(changes) > 2 \
    else None


def mean_power(a, b):
    vals = [p for t, p in zip(g.t, g.power_w) if a <= t <= b and p is not None]
    return statistics.fmean(vals) if vals else None


result.update(
    gpu=tel.ready["gpus"][0], power_source=g.power_source, seconds=t1 - t0,
    counter_j=energy.joules, counter_reason=energy.reason, power_integral_j=integral,
    power_notes=notes, counter_update_period_ms=period * 1000 if period else None,
    idle_before_w=mean_power(t0 + 2, t_load), load_w=mean_power(t_load + 5, t_idle),
    idle_after_w=mean_power(t_idle + 3, t1), samples=len(g.t), errors=tel.done.get("errors"))
if energy.joules and integral:
    result["difference_pct"] = 100 * abs(energy.joules - integral) / energy.joules
    result["pass"] = result["difference_pct"] <= 3.0
else:
    result["difference_pct"], result["pass"] = None, False
print(json.dumps(result, indent=1, default=str))
PYEOF
cat "$OUT/energy.json" >&2

echo "== 3/3 bench capacity --quick --engine $ENGINE --telemetry require (5 min at most)" >&2
if [[ "$ENGINE" == llamacpp ]]; then
    # llama.cpp runs on the CPU here (the xllamacpp wheel): the code trace with its lengths cut
    # to SmolLM2-on-CPU size, as benchmarks/bench_quick.py makes it
    mkdir -p "$OUT/trace"
    TRACE="$(cd "$(dirname "$0")" && "$PY" -c 'import sys; from pathlib import Path; from bench_quick import small_trace; print(small_trace(Path(sys.argv[1])))' "$OUT/trace")"
    SLO=(--slo ttft=1500,tpot=150)
else
    TRACE="$("$PY" -c 'import llmtraces, pathlib; print(pathlib.Path(llmtraces.__file__).parent / "data" / "azure-llm-2023" / "AzureLLMInferenceTrace_code.csv")')"
    SLO=(--slo ttft=2000,tpot=100)
fi
ARGS=(bench capacity "$TRACE" --engine "$ENGINE" "${SLO[@]}" --quick --telemetry require -o "$OUT/capacity")
if [[ -n "$MODEL" ]]; then ARGS+=(--model "$MODEL"); fi
CAP_RC=skipped
if [[ -z "${SKIP_CAPACITY:-}" ]]; then
    set +e
    timeout 330 llmtraces "${ARGS[@]}" >"$OUT/capacity.txt" 2>&1
    CAP_RC=$?
    set -e
    tail -n 30 "$OUT/capacity.txt" >&2
fi

"$PY" - "$OUT" "$ENGINE" "$CAP_RC" "$(( $(date +%s) - START ))" "${ARGS[*]}" <<'PYEOF'
import json, sys
from pathlib import Path
out, engine, rc, took, argv = Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
env = json.loads((out / "env.json").read_text())
e = json.loads((out / "energy.json").read_text())
gpu = env["gpu"]


def f(x, fmt=".1f"):
    return "n/a" if x is None else format(x, fmt)


dev = gpu["devices"][0] if gpu["devices"] else {}
print(f"\n### GPU check ({env['created_at'][:10]}, {dev.get('name')}, driver {gpu['driver']}, "
      f"CUDA {gpu['cuda']}, llmtraces {env['llmtraces']['version']} "
      f"{(env['llmtraces']['git_commit'] or '')[:12]})\n")
print("| check | result |\n|---|---|")
pct = e.get("difference_pct")
verdict = "PASS" if e.get("pass") else "FAIL"
print(f"| NVML energy counter vs integrated {e['power_source']} power, idle-load-idle "
      f"{e['seconds']:.0f} s ({e['load'] or 'no torch: idle only'}) | "
      f"{f(e['counter_j'])} J vs {f(e['power_integral_j'])} J: {f(pct, '.2f')} % "
      f"({verdict}, bound 3 %) |")
print(f"| counter update period | {f(e['counter_update_period_ms'], '.0f')} ms "
      f"({e['samples']} samples at 100 ms) |")
print(f"| power idle before / load / idle after | {f(e['idle_before_w'])} / "
      f"{f(e['load_w'])} / {f(e['idle_after_w'])} W |")
print(f"| NVML calls that failed | {e['errors'] or 'none'} |")
cap_file = out / "capacity" / "capacity.json"
if cap_file.is_file():
    cap = json.loads(cap_file.read_text())
    entries = cap if isinstance(cap, list) else cap.get("searches", [cap]) \
        if isinstance(cap, dict) else []
    for c in entries:
        if not isinstance(c, dict) or "capacity" not in c:
            continue
        at = c.get("at_capacity") or {}
        en = at.get("energy") or {}
        print(f"| `llmtraces {argv.split(' -o ')[0]}` | status {c.get('status')}, capacity "
              f"{c['capacity']}, first failing {c.get('first_failing')}, binding SLO "
              f"{c.get('binding_slo')}; at capacity: goodput {at.get('goodput_rps')} rps, "
              f"TTFT p99 {at.get('ttft_p99_ms')} ms, energy {en.get('energy_j')} J, "
              f"{en.get('j_per_token')} J/token ({en.get('reason') or 'ok'}) |")
else:
    print(f"| `llmtraces bench capacity --engine {engine} --quick` | exit {rc}, no "
          "capacity.json (see capacity.txt) |")
print(f"| total time | {took} s |")
PYEOF
echo "gpu_check: outputs in $OUT" >&2
