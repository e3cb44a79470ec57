"""asu-eval on the shared model and TOFU data: its ROUGE-L, truth-ratio statistics and model
utility recomputed here from the per-question values it reports, its forget quality against
scipy's KS test, and its errors on bad input.

usage: /usr/bin/python3 eval_check.py ASU_EVAL MODEL.gguf TOFU_DIR ENCODER_JSON
Exits 77 (skipped) when scipy is missing."""

import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile

try:
    from scipy import stats
except ImportError:
    print("scipy is not importable; run with /usr/bin/python3 (apt-get install python3-scipy)")
    sys.exit(77)

FAILS = []


def check(cond, what):
    print(("ok: " if cond else "FAIL: ") + what)
    if not cond:
        FAILS.append(what)


def words(text):
    return [w.lower() for w in re.findall(r"[A-Za-z0-9]+", text)]


def rouge_l_recall(generated, reference):
    g, r = words(generated), words(reference)
    if not r:
        return 0.0
    row = [0] * (len(r) + 1)
    for a in g:
        prev_diag = 0
        for j, b in enumerate(r, 1):
            keep = row[j]
            row[j] = prev_diag + 1 if a == b else max(row[j], row[j - 1])
            prev_diag = keep
    return row[-1] / len(r)


def load(path, limit):
    with open(path) as f:
        return [json.loads(line) for line in f][:limit]


def vocabulary(path):
    """The words of a GPT-2 encoder.json: tokens of ASCII letters, after the U+0120 mark."""
    with open(path) as f:
        tokens = json.load(f)
    out = set()
    for t in tokens:
        w = t[1:] if t.startswith("\u0120") else t
        if w and re.fullmatch(r"[A-Za-z]+", w) and len(w) < 63:
            out.add(w.lower())
    return out


def known_share(text, vocab):
    ws = words(text)
    if not ws:
        return 0.0
    return sum(1 for w in ws if w.isdigit() or w in vocab) / len(ws)


def run_eval(tool, model, tofu, out, *extra):
    cmd = [tool, "--model", model, "--tofu", tofu, "--limit", "4", "--max-tokens", "30",
           "--json", out, "--vocabulary", ENCODER] + list(extra)
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    check(r.returncode == 0, "asu-eval %s exits 0 (%s)" % (" ".join(extra), r.stderr[-300:]))
    with open(out) as f:
        return json.load(f)


ENCODER = ""


def check_values(result, tofu):
    files = {"forget": "forget01", "retain": "retain", "real_authors": "real_authors",
             "world_facts": "world_facts"}
    parts = []
    for split, name in files.items():
        s = result["splits"][split]
        rows = load(os.path.join(tofu, name + "_perturbed.jsonl"), 4)
        rouge = sum(rouge_l_recall(g, r["answer"]) for g, r in zip(s["generated"], rows)) / 4
        check(abs(rouge - s["rouge_l"]) < 1e-12, "%s ROUGE-L %.6f recomputed %.6f"
              % (split, s["rouge_l"], rouge))
        vocab = vocabulary(ENCODER)
        share = sum(known_share(g, vocab) for g in s["generated"]) / 4
        check(abs(share - s["vocabulary_share"]) < 1e-12, "%s known-word share %.6f recomputed "
              "%.6f" % (split, s["vocabulary_share"], share))
        ratios = s["truth_ratios"]
        if split == "forget":
            tr = sum(min(x, 1 / x) for x in ratios) / len(ratios)
        else:
            tr = sum(max(0.0, 1 - x) for x in ratios) / len(ratios)
        check(abs(tr - s["truth_ratio"]) < 1e-12, "%s truth ratio statistic %.6f recomputed %.6f"
              % (split, s["truth_ratio"], tr))
        check(0 < s["probability"] <= 1, "%s probability %.6g in (0, 1]" % (split, s["probability"]))
        check(0 <= s["exact_match"] <= 1 and 0 <= s["extraction_strength"] <= 1,
              "%s exact match %.4f and extraction strength %.4f in [0, 1]"
              % (split, s["exact_match"], s["extraction_strength"]))
        if split != "forget":
            parts += [s["probability"], s["rouge_l"], s["truth_ratio"]]
    utility = 0.0 if min(parts) <= 0 else statistics.harmonic_mean(parts)
    check(abs(utility - result["model_utility"]) < 1e-12, "model utility %.6g recomputed %.6g"
          % (result["model_utility"], utility))


def main():
    global ENCODER
    tool, model, tofu, ENCODER = sys.argv[1:5]
    work = tempfile.mkdtemp(prefix="asu-eval-check.")
    first = run_eval(tool, model, tofu, os.path.join(work, "a.json"))
    check_values(first, tofu)
    same = run_eval(tool, model, tofu, os.path.join(work, "b.json"), "--reference",
                    os.path.join(work, "a.json"))
    check(same["forget_quality"] == 1.0, "forget quality against itself is %r" %
          same["forget_quality"])
    ratios = first["splits"]["forget"]["truth_ratios"]
    shifted = [x * 3 + 0.5 for x in ratios]
    with open(os.path.join(work, "shifted.json"), "w") as f:
        json.dump({"splits": {"forget": {"truth_ratios": shifted}}}, f)
    other = run_eval(tool, model, tofu, os.path.join(work, "c.json"), "--reference",
                     os.path.join(work, "shifted.json"))
    want = stats.ks_2samp(ratios, shifted, method="exact").pvalue
    check(abs(other["forget_quality"] - want) <= 1e-9 * want,
          "forget quality %.6g, scipy %.6g" % (other["forget_quality"], want))
    bad = subprocess.run([tool, "--model", model, "--tofu", work], capture_output=True,
                         text=True, timeout=120)
    check(bad.returncode == 1 and "forget01_perturbed.jsonl" in bad.stderr,
          "a folder without TOFU files: %s" % bad.stderr.strip()[-200:])
    bad = subprocess.run([tool, "--model", model, "--tofu", tofu, "--forget", "forget02"],
                         capture_output=True, text=True, timeout=60)
    check(bad.returncode == 2 and "forget02" in bad.stderr, "an unknown forget split: %s"
          % bad.stderr.strip())
    # A missing reference or unprotected file fails before any split is measured.
    for flag in ("--reference", "--unprotected"):
        bad = subprocess.run([tool, "--model", model, "--tofu", tofu, flag,
                              os.path.join(work, "missing.json")],
                             capture_output=True, text=True, timeout=60)
        check(bad.returncode == 1 and "missing.json" in bad.stderr
              and "questions, probability" not in bad.stderr,
              "a missing %s file fails before measuring: %s" % (flag, bad.stderr.strip()[-200:]))
    if FAILS:
        print("eval check: %d failures; files in %s" % (len(FAILS), work))
        return 1
    shutil.rmtree(work, ignore_errors=True)
    print("eval check: all passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
