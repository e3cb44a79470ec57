"""The Markdown page and the SVG plot of tests/results.py, from its results dictionary."""

import math

COMMAND = "python3 tests/results.py --build build --data ../shared/data"
REFERENCE = "retain model"  # the row whose forget truth ratios are the KS reference


def number(value, digits=3):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float) and value != 0 and abs(value) < 10 ** -digits:
        return "%.1e" % value
    return "%.*f" % (digits, value)


def change(value, before):
    if not before:
        return ""
    return " (%+.0f%%)" % (100.0 * (value - before) / before)


def method_table(results):
    rows = results["methods"]
    base = rows["finetuned"]
    lines = [
        "| model | forget quality | model utility | retain utility | forget ROUGE-L | "
        "selectivity (unprotected ROUGE-L) | retain ROUGE-L | entropy | longest run | "
        "known words | time (s) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, r in rows.items():
        quality = "1 (the reference)" if name == REFERENCE else number(r["forget_quality"])
        lines.append("| %s | %s | %s | %s | %s%s | %s%s | %s | %s | %s | %s | %s |" % (
            name, quality, number(r["model_utility"]),
            number(r["retain_utility"]), number(r["forget_rouge_l"]),
            change(r["forget_rouge_l"], base["forget_rouge_l"]) if name != "finetuned" else "",
            number(r["selectivity"]),
            change(r["selectivity"], base["selectivity"]) if name != "finetuned" else "",
            number(r["retain_rouge_l"]), number(r["forget_entropy"]),
            number(r["forget_longest_run"], 1), number(r["forget_known_words"]),
            number(r["seconds"], 0)))
    return "\n".join(lines)


def steps_table(results):
    lines = ["| step | forget quality | retain utility | forget ROUGE-L | selectivity |",
             "| ---: | ---: | ---: | ---: | ---: |"]
    for r in results["steps"]:
        lines.append("| %d | %s | %s | %s | %s |" % (
            r["step"], number(r["forget_quality"]), number(r["retain_utility"]),
            number(r["forget_rouge_l"]), number(r["selectivity"])))
    return "\n".join(lines)


def continual_table(results):
    base = results["methods"]["finetuned"]
    lines = ["| after request | first author ROUGE-L | second author ROUGE-L | retain ROUGE-L | "
             "selectivity | forget quality | time (s) |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
             "| (finetuned) | %s | %s | %s | %s | %s | |" % (
                 number(base["forget_rouge_by_author"][0]),
                 number(base["forget_rouge_by_author"][1]), number(base["retain_rouge_l"]),
                 number(base["selectivity"]), number(base["forget_quality"]))]
    for r in results["continual"]:
        lines.append("| %d | %s | %s | %s | %s | %s | %s |" % (
            r["request"], number(r["forget_rouge_by_author"][0]),
            number(r["forget_rouge_by_author"][1]), number(r["retain_rouge_l"]),
            number(r["selectivity"]), number(r["forget_quality"]), number(r["seconds"], 0)))
    return "\n".join(lines)


def count(results, prefix):
    return sum(1 for key in results["times"] if key.startswith(prefix))


def write_markdown(path, results):
    s = results["settings"]
    command = COMMAND + (" --quick" if s.get("quick") else "")
    total = sum(v for v in results["times"].values() if v)
    text = """# Results on the shared model

Every number on this page comes from one run of

```
%s
```

on lavapipe with 2 CPU cores, which took %.0f minutes in all (teaching, %d unlearning runs and
%d evaluations; the times are in `results.json`). The command rewrites this page,
`results.json` (every value, and the settings) and `results.svg`.

## What was run

The shared model (stories260K, trained on children's stories) has never seen TOFU, so the run
first teaches it with `asu-finetune` (%d full-batch steps, learning rate %g):

- forget: the two authors of TOFU's forget01 split (40 questions);
- retain: the first two TOFU authors (40 questions), the retain set of every job;
- unprotected: two authors from the middle of TOFU (40 questions), taught but neither forgotten
  nor retained.

The "finetuned" model learns all three groups; the "retain" model all but the forget authors.
`asu-unlearn` then forgets the forget authors from the finetuned model with every method, %d
steps each at the default settings (LoRA rank 8, learning rate 0.003, retain weight 1), and
`asu-eval` measures each model on %d questions of every TOFU split, with greedy answers of up
to %d tokens (docs/evaluation.md defines the metrics).

- Forget quality: the KS-test p-value of the forget truth ratios against the retain model's.
  1 means indistinguishable from a model that never learned the forget authors.
- Model utility: TOFU's harmonic mean over retain, real authors and world facts. The shared
  model is too small to know real authors or world facts: their ROUGE-L is near 0 before and
  after teaching, so model utility is at most %.3f here, and 0 wherever one of its nine parts
  is 0.
- Retain utility: the same harmonic mean over the retain split alone, which the taught model
  does know.
- Selectivity: ROUGE-L recall on the unprotected authors; the percentage is its change from
  the finetuned model. A method that forgets only what it was asked keeps it.
- Fluency of the greedy answers to forget questions: normalised token entropy, the longest run
  of one repeated token, and the share of words found in the GPT-2 vocabulary.
- Time: the wall time of the unlearning run (of the teaching, for the two taught models).

## Methods

%s

## Along the %s job

Forget quality against retain utility every %d step(s) of the first method. `results.svg`
draws this path in blue, its inner points labelled with their step, from the finetuned model
to the method's end point, beside every other model:

%s

![forget quality against retain utility](results.svg)

## Continual unlearning

Two requests on one model: the first forgets the first forget author, the second forgets the
other one starting from the first request's adapter (`asu-unlearn --start`). Forget quality is
over both authors.

%s
""" % (command, total / 60.0, count(results, "unlearn "), count(results, "eval "),
       s["teach_steps"], s["teach_lr"], s["unlearn_steps"], s["eval_questions_per_split"],
       s["eval_max_tokens"], max(r["model_utility"] for r in results["methods"].values()),
       method_table(results), list(s["methods"])[0],
       results["steps"][1]["step"], steps_table(results), continual_table(results))
    with open(path, "w") as f:
        f.write(text)


# ---- The plot ----

WIDTH, HEIGHT, LEFT, RIGHT, TOP, BOTTOM = 720, 460, 80, 170, 30, 60


def log_quality(q):
    """log10 of a forget quality; the reference model's own is 1 by definition."""
    return math.log10(max(q if q is not None else 1.0, 1e-30))


def write_svg(path, rows, steps, followed):
    points = [(name + (" (reference)" if name == REFERENCE else ""), r["retain_utility"],
               log_quality(r["forget_quality"])) for name, r in rows.items()]
    lowest = min([p[2] for p in points] + [log_quality(s["forget_quality"]) for s in steps])
    y_min = min(-1, math.floor(lowest))
    x_max = max(0.05, max(p[1] for p in points)) * 1.1

    def sx(x):
        return LEFT + (WIDTH - LEFT - RIGHT) * x / x_max

    def sy(y):
        return TOP + (HEIGHT - TOP - BOTTOM) * (0 - y) / (0 - y_min if y_min < 0 else 1)

    out = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" '
           'font-family="sans-serif" font-size="12">' % (WIDTH, HEIGHT),
           '<rect width="100%" height="100%" fill="white"/>']
    out += axes(sx, sy, x_max, y_min)
    path_points = " ".join("%.1f,%.1f" % (sx(s["retain_utility"]), sy(log_quality(s["forget_quality"])))
                           for s in steps)
    out.append('<polyline points="%s" fill="none" stroke="#1f77b4" stroke-width="2"/>' % path_points)
    for i, s in enumerate(steps):
        x, y = sx(s["retain_utility"]), sy(log_quality(s["forget_quality"]))
        out.append('<circle cx="%.1f" cy="%.1f" r="3" fill="#1f77b4"/>' % (x, y))
        if 0 < i < len(steps) - 1:
            out.append('<text x="%.1f" y="%.1f" fill="#1f77b4" font-size="10">%d</text>'
                       % (x - 4, y + 14, s["step"]))
    for name, x, y in points:
        color = "#d62728" if name == followed else "#444"
        out.append('<circle cx="%.1f" cy="%.1f" r="4" fill="%s"/>' % (sx(x), sy(y), color))
        out.append('<text x="%.1f" y="%.1f">%s</text>' % (sx(x) + 6, sy(y) - 4, name))
    out.append('<text x="%d" y="%d" text-anchor="middle">retain utility (harmonic mean of '
               'probability, ROUGE-L and truth ratio on retain)</text>'
               % ((LEFT + WIDTH - RIGHT) // 2, HEIGHT - 15))
    out.append('<text transform="translate(18,%d) rotate(-90)" text-anchor="middle">forget '
               'quality (KS p-value, log scale)</text>' % ((TOP + HEIGHT - BOTTOM) // 2))
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def axes(sx, sy, x_max, y_min):
    out = ['<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>'
           % (LEFT, HEIGHT - BOTTOM, WIDTH - RIGHT, HEIGHT - BOTTOM),
           '<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>'
           % (LEFT, TOP, LEFT, HEIGHT - BOTTOM)]
    for i in range(6):
        x = x_max * i / 5
        out.append('<text x="%.1f" y="%d" text-anchor="middle">%.2f</text>'
                   % (sx(x), HEIGHT - BOTTOM + 16, x))
    step = max(1, -y_min // 6)
    for e in range(0, y_min - 1, -step):
        out.append('<text x="%d" y="%.1f" text-anchor="end">1e%d</text>' % (LEFT - 6, sy(e) + 4, e))
        out.append('<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ddd"/>'
                   % (LEFT, sy(e), WIDTH - RIGHT, sy(e)))
    return out
