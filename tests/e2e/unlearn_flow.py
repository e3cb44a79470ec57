"""The whole ASU flow on the shared model, measured from the server.

1. Teach: asu-finetune teaches the shared model some TOFU authors (the two forget01 authors and
   the first few authors of full.jsonl) and writes the taught model as GGUF.
2. Serve the taught model with asu-server on a free loopback port. Ask the C client `asu` to run
   an asu_gd job that forgets the forget01 authors with the other taught authors as the retain
   set, and to activate the adapter; while it trains, a Generate from a Python gRPC client must
   be served.
3. Measure greedy answers before and after through Generate: ROUGE-L recall on the forget and
   retained authors, repeated-token runs, and the job's KL(teacher || student) on the forget
   answers at its first and last step.
4. Restart the server and find the adapter still listed and active.

usage: /usr/bin/python3 unlearn_flow.py --build BUILD_DIR --data SHARED_DATA_DIR [options]
With --check the criteria below are asserted (exit 1 on failure); without it the numbers are
only printed, with before/after answers. Exits 77 when grpcio or protoc is missing.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

SKIP = 77

try:
    import grpc  # noqa: F401
except ImportError:
    print("grpcio is not importable; run with /usr/bin/python3 (Debian's python3-grpcio)")
    sys.exit(SKIP)

from asu_grpc import Client, Server, build_messages


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--build", required=True, help="meson build directory")
    p.add_argument("--data", required=True, help="shared data directory (models/, tofu/)")
    p.add_argument("--proto", default=os.path.join(os.path.dirname(__file__), "..", "..", "proto"))
    p.add_argument("--work", help="working directory (default: a new temporary one, removed)")
    p.add_argument("--retain-authors", type=int, default=2, help="taught authors kept (default 2)")
    p.add_argument("--questions", type=int, default=10, help="questions per author (max 20)")
    p.add_argument("--teach-steps", type=int, default=200)
    p.add_argument("--teach-lr", type=float, default=3e-3)
    p.add_argument("--unlearn-steps", type=int, default=150)
    p.add_argument("--tau", type=float, default=3.0)
    p.add_argument("--max-tokens", type=int, default=120, help="generation budget per answer")
    p.add_argument("--check", action="store_true", help="assert the criteria")
    p.add_argument("--summary", help="write the measured numbers as JSON to this file")
    return p.parse_args()


def words(text):
    return re.findall(r"[a-z0-9]+", text.lower())


def rouge_l_recall(generated, reference):
    """Word-level longest common subsequence over the reference's word count."""
    g, r = words(generated), words(reference)
    if not r:
        return 0.0
    prev = [0] * (len(g) + 1)
    for rw in r:
        cur = [0] * (len(g) + 1)
        for j, gw in enumerate(g, 1):
            cur[j] = prev[j - 1] + 1 if rw == gw else max(prev[j], cur[j - 1])
        prev = cur
    return prev[-1] / len(r)


def longest_run(tokens):
    best, run = 0, 0
    for i, t in enumerate(tokens):
        run = run + 1 if i and t == tokens[i - 1] else 1
        best = max(best, run)
    return best


def load_authors(data_dir, retain_authors, questions):
    rows = [json.loads(line) for line in open(os.path.join(data_dir, "tofu", "full.jsonl"))]
    forget_rows = [json.loads(line) for line in open(os.path.join(data_dir, "tofu", "forget01.jsonl"))]
    per_author = 20  # TOFU has 20 questions per author, in consecutive rows
    forget = [r for a in range(len(forget_rows) // per_author)
              for r in forget_rows[a * per_author:a * per_author + questions]]
    retain = [r for a in range(retain_authors) for r in rows[a * per_author:a * per_author + questions]]
    return forget, retain


def write_jsonl(path, rows):
    with open(path, "w") as f:
        for r in rows:
            f.write(json.dumps({"question": r["question"], "answer": r["answer"]}) + "\n")


def measure(client, rows, max_tokens):
    """Greedy answers to each question: mean ROUGE-L recall, longest token run, the answers."""
    recalls, runs, answers = [], [], []
    for r in rows:
        text, tokens = client.generate("Question: %s\nAnswer:" % r["question"], max_tokens)
        recalls.append(rouge_l_recall(text, r["answer"]))
        runs.append(longest_run(tokens))
        answers.append(text.strip())
    return sum(recalls) / len(recalls), max(runs), answers


def run(cmd, log):
    """Runs a program, echoing its log lines, and returns its wall time."""
    print("$ " + " ".join(cmd), flush=True)
    started = time.time()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    tail = []
    for line in proc.stdout:
        log.write(line)
        tail = (tail + [line])[-40:]
        print("  " + line.rstrip(), flush=True)
    proc.wait()
    if proc.returncode != 0:
        raise RuntimeError("%s failed with exit status %d:\n%s"
                           % (cmd[0], proc.returncode, "".join(tail)))
    return time.time() - started


def unlearn_while_serving(args, client, server, asu_cli, forget_path, retain_path, log):
    """Runs the job through the C client; while it trains, one Generate must be served."""
    cmd = [asu_cli, "--server", server.address, "unlearn", "--name", "tofu-forget01",
           "--forget", forget_path, "--retain", retain_path, "--method", "asu_gd",
           "--temperature-attn", str(args.tau), "--steps", str(args.unlearn_steps),
           "--activate", "--wait"]
    print("$ " + " ".join(cmd), flush=True)
    started = time.time()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = []
    reader = threading.Thread(target=lambda: output.extend(proc.stdout))
    reader.start()
    served_during_training = False
    pb = client.pb
    job_id = None
    while proc.poll() is None and not served_during_training:
        if job_id is None:
            m = re.search(r"\b(job-[0-9]+)\b", "".join(output))
            job_id = m.group(1) if m else None
        if job_id:
            job = client.unary("GetJob", pb.JobRequest(job_id=job_id), pb.Job)
            if job.state == pb.Job.RUNNING and job.step > 0:
                text, _ = client.generate("Once upon a time", 16, adapter="none")
                job = client.unary("GetJob", pb.JobRequest(job_id=job_id), pb.Job)
                served_during_training = bool(text) and job.state == pb.Job.RUNNING
        time.sleep(0.2)
    proc.wait()
    reader.join()
    log.write("".join(output))
    elapsed = time.time() - started
    if proc.returncode != 0:
        print("".join(output)[-4000:])
        raise RuntimeError("asu unlearn failed with exit status %d" % proc.returncode)
    return job_id, served_during_training, elapsed


def adapters_listing(asu_cli, address):
    out = subprocess.run([asu_cli, "--server", address, "adapters"], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    return out.stdout


def main():
    args = parse_args()
    build = os.path.abspath(args.build)
    finetune = os.path.join(build, "host", "asu-finetune")
    server_bin = os.path.join(build, "plugin", "asu-server")
    asu_cli = os.path.join(build, "plugin", "asu")
    model = os.path.join(args.data, "models", "stories260K.gguf")
    work = args.work or tempfile.mkdtemp(prefix="asu-flow.")
    os.makedirs(work, exist_ok=True)
    log = open(os.path.join(work, "flow.log"), "a")
    pb = build_messages(os.path.abspath(args.proto), work)

    forget, retain = load_authors(args.data, args.retain_authors, args.questions)
    forget_path, retain_path = os.path.join(work, "forget.jsonl"), os.path.join(work, "retain.jsonl")
    teach_path, taught = os.path.join(work, "teach.jsonl"), os.path.join(work, "taught.gguf")
    write_jsonl(forget_path, forget)
    write_jsonl(retain_path, retain)
    write_jsonl(teach_path, forget + retain)
    print("forget: %d questions of the forget01 authors; retain: %d questions of %d other authors"
          % (len(forget), len(retain), args.retain_authors), flush=True)

    teach_seconds = run([finetune, "--model", model, "--data", teach_path, "--out", taught,
                            "--steps", str(args.teach_steps), "--lr", str(args.teach_lr)], log)
    print("taught in %.0f s" % teach_seconds, flush=True)

    adapters = os.path.join(work, "adapters")
    server = Server(server_bin, taught, adapters, os.path.join(work, "server.log"))
    results = {}
    try:
        client = Client(pb, server.port)
        before_forget, _, forget_answers_before = measure(client, forget, args.max_tokens)
        before_retain, _, retain_answers_before = measure(client, retain, args.max_tokens)
        print("before: forget ROUGE-L recall %.3f, retain %.3f" % (before_forget, before_retain),
              flush=True)

        job_id, served, unlearn_seconds = unlearn_while_serving(
            args, client, server, asu_cli, forget_path, retain_path, log)
        job = client.unary("GetJob", pb.JobRequest(job_id=job_id), pb.Job)
        after_forget, forget_run, forget_answers_after = measure(client, forget, args.max_tokens)
        after_retain, retain_run, retain_answers_after = measure(client, retain, args.max_tokens)
        server.stop()

        server = Server(server_bin, taught, adapters, os.path.join(work, "server.log"))
        listing = adapters_listing(asu_cli, server.address)
    finally:
        server.stop()

    results = {
        "teach_seconds": round(teach_seconds, 1),
        "unlearn_seconds": round(unlearn_seconds, 1),
        "forget_rouge_before": before_forget, "forget_rouge_after": after_forget,
        "retain_rouge_before": before_retain, "retain_rouge_after": after_retain,
        "forget_kl_start": job.initial_forget_loss, "forget_kl_end": job.forget_loss,
        "retain_nll_start": job.initial_retain_loss, "retain_nll_end": job.retain_loss,
        "heldout_nll_start": job.initial_heldout_nll, "heldout_nll_end": job.heldout_nll,
        "longest_token_run_after": max(forget_run, retain_run),
        "generate_served_while_training": served,
        "adapters_after_restart": listing.strip(),
    }
    report(args, results, forget, forget_answers_before, forget_answers_after, retain,
           retain_answers_before, retain_answers_after)
    if args.summary:
        with open(args.summary, "w") as f:
            json.dump(results, f, indent=2)
    failures = check_results(results) if args.check else []
    for failure in failures:
        print("FAIL:", failure)
    if not args.work and not failures:
        shutil.rmtree(work, ignore_errors=True)
    elif failures:
        print("logs kept in", work)
    return 1 if failures else 0


def report(args, r, forget, f_before, f_after, retain, r_before, r_after):
    for title, rows, before, after in [("forget", forget, f_before, f_after),
                                       ("retain", retain, r_before, r_after)]:
        for i in range(min(2, len(rows))):
            print("\n[%s] Q: %s\n  reference: %s\n  before:    %s\n  after:     %s"
                  % (title, rows[i]["question"], rows[i]["answer"], before[i], after[i]))
    print()
    print("forget ROUGE-L recall   %.3f -> %.3f" % (r["forget_rouge_before"], r["forget_rouge_after"]))
    print("retain ROUGE-L recall   %.3f -> %.3f" % (r["retain_rouge_before"], r["retain_rouge_after"]))
    print("KL(teacher || student)  %.4f -> %.4f (forget answers, tau %g)"
          % (r["forget_kl_start"], r["forget_kl_end"], args.tau))
    print("retain answer NLL       %.4f -> %.4f" % (r["retain_nll_start"], r["retain_nll_end"]))
    print("held-out NLL            %.4f -> %.4f" % (r["heldout_nll_start"], r["heldout_nll_end"]))
    print("longest token run after %d" % r["longest_token_run_after"])
    print("Generate served while the job trained: %s" % r["generate_served_while_training"])
    print("adapters after restart: %s" % r["adapters_after_restart"])
    print("teaching %.0f s, unlearning %.0f s" % (r["teach_seconds"], r["unlearn_seconds"]))


def check_results(r):
    failures = []
    if not r["forget_rouge_after"] <= 0.5 * r["forget_rouge_before"]:
        failures.append("forget ROUGE-L recall fell from %.3f to %.3f, not by half"
                        % (r["forget_rouge_before"], r["forget_rouge_after"]))
    if not abs(r["retain_rouge_after"] - r["retain_rouge_before"]) < 0.1 * r["retain_rouge_before"]:
        failures.append("retain ROUGE-L recall changed from %.3f to %.3f, by 10%% or more"
                        % (r["retain_rouge_before"], r["retain_rouge_after"]))
    if not r["forget_kl_end"] < 0.25 * r["forget_kl_start"]:
        failures.append("KL on forget answers went from %.4f to %.4f, not under a quarter"
                        % (r["forget_kl_start"], r["forget_kl_end"]))
    if r["longest_token_run_after"] > 4:
        failures.append("a token repeats %d times in a row after unlearning"
                        % r["longest_token_run_after"])
    if not r["generate_served_while_training"]:
        failures.append("no Generate was served while the job trained")
    if not re.search(r"^tofu-forget01\s+1\s+active$", r["adapters_after_restart"], re.M):
        failures.append("after a restart the adapter is not listed as active: %r"
                        % r["adapters_after_restart"])
    return failures


if __name__ == "__main__":
    sys.exit(main())
