"""Regenerates docs/results.md, docs/results.json and docs/results.svg: ASU and the baseline
unlearning methods on the shared model, measured with the TOFU metrics.

The shared model has never seen TOFU, so the run first teaches it:
- forget: the two forget01 authors (40 questions);
- retain: the first two authors of TOFU (40 questions), the retain set of every job;
- unprotected: two authors from the middle of TOFU (40 questions), taught but neither forgotten
  nor retained; their ROUGE-L after unlearning is the selectivity.
asu-finetune teaches all three groups ("finetuned" model) and, separately, all but the forget
authors ("retain" model, the reference of forget quality). asu-unlearn then forgets the forget
authors from the finetuned model with every method, and asu-eval measures each result on
40 questions of every TOFU split and on the unprotected authors. A continual run forgets the
two forget authors one after the other, the second job starting from the first's adapter.

usage: python3 tests/results.py --build build --data ../shared/data [--work DIR] [--out docs]
Intermediate files go to --work (default: a temporary folder, removed at the end); a second
run with the same --work reuses what is there, and keeps the wall times of the first.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

# The settings of the published run, and of --quick, a check that the pipeline works end to
# end in a few minutes (its numbers mean nothing).
FULL = {"teach_steps": 60, "teach_lr": 0.005, "unlearn_steps": 25, "snapshot_every": 5,
        "eval_questions_per_split": 40, "eval_max_tokens": 200}
QUICK = {"teach_steps": 3, "teach_lr": 0.005, "unlearn_steps": 2, "snapshot_every": 1,
         "eval_questions_per_split": 3, "eval_max_tokens": 8}

# (label, asu-unlearn options); the first is the one followed step by step in the plot.
METHODS = [
    ("asu_gd", ["--method", "asu_gd", "--tau", "3"]),
    ("asu_kl", ["--method", "asu_kl", "--tau", "3"]),
    ("asu_gd tau 2", ["--method", "asu_gd", "--tau", "2"]),
    ("ga", ["--method", "ga"]),
    ("gd", ["--method", "gd"]),
    ("npo", ["--method", "npo"]),
    ("simnpo", ["--method", "simnpo"]),
    ("idk_nll", ["--method", "idk_nll"]),
    ("me_gd", ["--method", "me_gd"]),
]


def parse_args():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--build", required=True, help="meson build directory")
    p.add_argument("--data", required=True, help="shared data directory (models/, tofu/)")
    p.add_argument("--work", help="folder for intermediate files, kept and reused")
    p.add_argument("--quick", action="store_true",
                   help="tiny settings: checks that every stage runs (for the tests)")
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "docs"),
                   help="where results.md, results.json and results.svg go (default docs)")
    return p.parse_args()


class Run:
    """Paths, the log and the wall times of one pipeline run."""

    def __init__(self, args):
        self.build = os.path.abspath(args.build)
        self.data = os.path.abspath(args.data)
        self.quick = args.quick
        self.settings = dict(QUICK if args.quick else FULL)
        self.work = os.path.abspath(args.work) if args.work else tempfile.mkdtemp(prefix="asu-results.")
        os.makedirs(self.work, exist_ok=True)
        self.log = open(os.path.join(self.work, "run.log"), "a")
        self.times_path = os.path.join(self.work, "times.json")
        self.times = {}
        if os.path.exists(self.times_path):
            with open(self.times_path) as f:
                self.times = json.load(f)

    def path(self, *parts):
        return os.path.join(self.work, *parts)

    def tool(self, name):
        return os.path.join(self.build, "host", name)

    def step(self, key, output, cmd):
        """Runs cmd unless output exists; records and returns its wall time under key."""
        if not os.path.exists(output):
            print("running", key, flush=True)
            self.log.write("$ %s\n" % " ".join(cmd))
            self.log.flush()
            start = time.monotonic()
            done = subprocess.run(cmd, stdout=self.log, stderr=subprocess.STDOUT)
            if done.returncode != 0:
                sys.exit("%s failed (exit %d); see %s" % (key, done.returncode,
                                                          self.path("run.log")))
            self.times[key] = round(time.monotonic() - start, 1)
            with open(self.times_path, "w") as f:
                json.dump(self.times, f, indent=1)
        return self.times.get(key)


def write_sets(run):
    with open(os.path.join(run.data, "tofu", "full.jsonl")) as f:
        full = f.readlines()
    sets = {"forget": full[3960:4000], "retain": full[0:40], "unprotected": full[2000:2040],
            "forget_first": full[3960:3980], "forget_second": full[3980:4000]}
    sets["teach"] = sets["forget"] + sets["retain"] + sets["unprotected"]
    sets["teach_retain"] = sets["retain"] + sets["unprotected"]
    for name, rows in sets.items():
        with open(run.path(name + ".jsonl"), "w") as f:
            f.writelines(rows)


def teach(run, name, data):
    out = run.path(name + ".gguf")
    run.step("teach " + name, out, [
        run.tool("asu-finetune"), "--model", os.path.join(run.data, "models", "stories260K.gguf"),
        "--data", run.path(data + ".jsonl"), "--out", out,
        "--steps", str(run.settings["teach_steps"]), "--lr", str(run.settings["teach_lr"])])
    return out


def evaluate(run, tag, model, adapter=None, reference=None):
    out = run.path("eval-" + tag.replace(" ", "_").replace("/", "_") + ".json")
    cmd = [run.tool("asu-eval"), "--model", model, "--tofu", os.path.join(run.data, "tofu"),
           "--limit", str(run.settings["eval_questions_per_split"]),
           "--max-tokens", str(run.settings["eval_max_tokens"]),
           "--unprotected", run.path("unprotected.jsonl"),
           "--vocabulary", os.path.join(run.data, "tokenizers", "gpt2", "encoder.json"),
           "--json", out]
    if adapter:
        cmd += ["--adapter", adapter]
    if reference:
        cmd += ["--reference", reference]
    run.step("eval " + tag, out, cmd)
    with open(out) as f:
        return json.load(f)


def unlearn(run, tag, model, options, forget="forget", start=None):
    out = run.path("adapter-" + tag.replace(" ", "_"))
    cmd = [run.tool("asu-unlearn"), "--model", model, "--forget", run.path(forget + ".jsonl"),
           "--retain", run.path("retain.jsonl"), "--out", out,
           "--steps", str(run.settings["unlearn_steps"])]
    cmd += options
    if start:
        cmd += ["--start", start]
    if tag == METHODS[0][0]:
        cmd += ["--snapshot-every", str(run.settings["snapshot_every"])]
    seconds = run.step("unlearn " + tag, os.path.join(out, "adapter_model.safetensors"), cmd)
    return out, seconds


def harmonic(values):
    if any(v <= 0 for v in values):
        return 0.0
    return len(values) / sum(1.0 / v for v in values)


def summary(ev, seconds=None):
    s = ev["splits"]
    retain = s["retain"]
    return {
        "forget_quality": ev.get("forget_quality"),
        "model_utility": ev["model_utility"],
        "retain_utility": harmonic([retain["probability"], retain["rouge_l"],
                                    retain["truth_ratio"]]),
        "forget_rouge_l": s["forget"]["rouge_l"],
        "forget_probability": s["forget"]["probability"],
        "retain_rouge_l": retain["rouge_l"],
        "selectivity": ev["selectivity"],
        "forget_entropy": s["forget"]["token_entropy"],
        "forget_longest_run": s["forget"]["longest_run"],
        "forget_known_words": s["forget"]["vocabulary_share"],
        "forget_rouge_by_author": [mean(s["forget"]["rouge_l_per_question"][0:20]),
                                   mean(s["forget"]["rouge_l_per_question"][20:40])],
        "seconds": seconds,
    }


def mean(values):
    """The mean, or None (JSON null) for no values."""
    return sum(values) / len(values) if values else None


def main():
    args = parse_args()
    run = Run(args)
    write_sets(run)
    finetuned = teach(run, "finetuned", "teach")
    retain_model = teach(run, "retain", "teach_retain")
    reference = run.path("eval-retain_model.json")
    rows = {"retain model": summary(evaluate(run, "retain model", retain_model),
                                    run.times.get("teach retain")),
            "finetuned": summary(evaluate(run, "finetuned", finetuned, reference=reference),
                                 run.times.get("teach finetuned"))}
    for tag, options in METHODS:
        adapter, seconds = unlearn(run, tag, finetuned, options)
        rows[tag] = summary(evaluate(run, tag, finetuned, adapter, reference), seconds)
    path = steps_path(run, finetuned, reference, rows)
    continual = continual_run(run, finetuned, reference)
    results = {"settings": settings(run), "methods": rows, "steps": path, "continual": continual,
               "times": run.times}
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    from results_report import write_markdown, write_svg
    write_svg(os.path.join(args.out, "results.svg"), rows, path, METHODS[0][0])
    write_markdown(os.path.join(args.out, "results.md"), results)
    print("wrote", os.path.normpath(os.path.join(args.out, "results.md")))
    problems = check_outputs(args.out, results) if args.quick else []
    for problem in problems:
        print("FAIL:", problem)
    if not args.work and not problems:
        shutil.rmtree(run.work, ignore_errors=True)
    return 1 if problems else 0


def check_outputs(out, results):
    """What --quick checks: every stage left its values and the three files are whole."""
    import xml.dom.minidom
    problems = []
    with open(os.path.join(out, "results.md")) as f:
        page = f.read()
    for name, row in results["methods"].items():
        if "| %s |" % name not in page:
            problems.append("results.md has no row for %s" % name)
        for key in ("forget_quality", "selectivity", "retain_utility"):
            value = row[key]
            if key == "forget_quality" and name == "retain model":
                continue  # the reference itself
            if value is None or not 0.0 <= value <= 1.0:
                problems.append("%s: %s is %r" % (name, key, value))
    steps = [r["step"] for r in results["steps"]]
    if steps != sorted(steps) or steps[0] != 0 or steps[-1] != results["settings"]["unlearn_steps"]:
        problems.append("the job's steps are %s" % steps)
    if len(results["continual"]) != 2:
        problems.append("%d continual requests" % len(results["continual"]))
    try:
        xml.dom.minidom.parse(os.path.join(out, "results.svg"))
    except Exception as e:  # any parse failure is a broken plot
        problems.append("results.svg does not parse: %s" % e)
    return problems


def continual_run(run, finetuned, reference):
    """Forgets the first forget author, then the second on top of the first adapter."""
    first, t1 = unlearn(run, "continual 1", finetuned, METHODS[0][1], forget="forget_first")
    ev1 = evaluate(run, "continual 1", finetuned, first, reference)
    second, t2 = unlearn(run, "continual 2", finetuned, METHODS[0][1], forget="forget_second",
                         start=first)
    ev2 = evaluate(run, "continual 2", finetuned, second, reference)
    return [dict(request=1, **summary(ev1, t1)), dict(request=2, **summary(ev2, t2))]


def steps_path(run, finetuned, reference, rows):
    """The first method's job after every snapshot_every steps: step 0 is the finetuned model
    and the last step the method's own adapter, both already measured."""
    tag, last = METHODS[0][0], run.settings["unlearn_steps"]
    path = [dict(step=0, **rows["finetuned"])]
    for step in range(run.settings["snapshot_every"], last, run.settings["snapshot_every"]):
        snapshot = os.path.join(run.path("adapter-" + tag), "steps", "step-%05d" % step)
        ev = evaluate(run, "%s step %d" % (tag, step), finetuned, snapshot, reference)
        path.append(dict(step=step, **summary(ev)))
    path.append(dict(step=last, **rows[tag]))
    return path


def settings(run):
    return dict(run.settings, quick=run.quick,
                methods={tag: " ".join(options) for tag, options in METHODS})


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    sys.exit(main())
