"""Runs asu-bench with the given arguments and checks its JSON output.

stdout must hold one object with the device and a list of results. Each result needs its keys,
a positive value and a ratio equal to value / reference_value. The end-to-end rows of the
shared model must be there, and with --quick those of the generated 64-wide model too.

usage: bench_check.py ASU_BENCH [ARGS...]
"""
import json
import math
import subprocess
import sys

RESULT_KEYS = {"name", "shape", "value", "unit", "reference", "reference_value", "ratio"}
DEVICE_KEYS = {"name", "type", "subgroup_size"}
E2E_ROWS = {"prefill", "decode", "train_asu", "teacher", "peak_memory"}
KERNEL_ROWS = {"gemm", "rmsnorm", "rope", "swiglu", "softmax", "log_softmax", "cross_entropy",
               "kl", "adamw", "embedding", "axpy", "attention", "attention_backward"}


def check_row(row, problems):
    missing = RESULT_KEYS - row.keys()
    if missing:
        problems.append(f"row {row.get('name')} lacks {sorted(missing)}")
        return
    value, ref, ratio = row["value"], row["reference_value"], row["ratio"]
    if not (isinstance(value, (int, float)) and value > 0 and math.isfinite(value)):
        problems.append(f"row {row['name']} {row['shape']} has value {value}")
    if row["reference"] is None:
        if ref is not None or ratio is not None:
            problems.append(f"row {row['name']} has no reference but a reference value")
        return
    if not (isinstance(ref, (int, float)) and ref > 0):
        problems.append(f"row {row['name']} {row['shape']} has reference value {ref}")
    elif not math.isclose(ratio, value / ref, rel_tol=1e-6):
        problems.append(f"row {row['name']} {row['shape']}: ratio {ratio} is not "
                        f"{value} / {ref}")


def main():
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    run = subprocess.run(sys.argv[1:], stdout=subprocess.PIPE, check=False)
    if run.returncode != 0:
        print(f"asu-bench exited with status {run.returncode}", file=sys.stderr)
        return 1
    try:
        out = json.loads(run.stdout)
    except json.JSONDecodeError as e:
        print(f"stdout is not one JSON object: {e}", file=sys.stderr)
        return 1

    problems = []
    device = out.get("device", {})
    if DEVICE_KEYS - device.keys():
        problems.append(f"device lacks {sorted(DEVICE_KEYS - device.keys())}")
    results = out.get("results", [])
    for row in results:
        check_row(row, problems)

    names = {row.get("name") for row in results}
    want_kernels = "--only" not in sys.argv or "kernels" in sys.argv
    want_e2e = "--only" not in sys.argv or "e2e" in sys.argv
    if want_kernels and KERNEL_ROWS - names:
        problems.append(f"kernel rows missing: {sorted(KERNEL_ROWS - names)}")
    models = ["stories260K"]
    if "--quick" in sys.argv and "--no-llama" not in sys.argv:
        models += ["llama64-f32", "llama64-f16"]
    for model in models if want_e2e else []:
        rows = {row.get("name") for row in results if row.get("shape") == model}
        if E2E_ROWS - rows:
            problems.append(f"{model} rows missing: {sorted(E2E_ROWS - rows)}")

    for p in problems:
        print(p, file=sys.stderr)
    print(f"{len(results)} rows, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
