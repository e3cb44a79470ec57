"""Finetune and evaluation jobs through asu-server, with Debian's python3-grpcio as the client:

- StartFinetune trains a copy of the served model and writes a new GGUF file under the data
  root; the served model answers as before, and a second server on the new file answers the
  taught questions with the taught answers;
- bad requests fail with the field named: no data, an existing file, a path out of the data root,
  a missing folder, a name without ".gguf", a server without a data root;
- a cancelled finetune job leaves no file behind, and one stopped by SIGTERM is INTERRUPTED
  after a restart and writes its file once resumed;
- StartEvaluation measures the served model on TOFU files under the data root: its result
  equals what asu-eval prints for the same files and settings, and bad paths, splits and
  adapters fail with the field named.

usage: task_jobs.py --server BIN --eval BIN --model GGUF --tofu DIR --proto DIR
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

try:
    import grpc
except ImportError:
    print("grpcio is not importable; run with /usr/bin/python3")
    sys.exit(77)

from asu_grpc import Client, Server, build_messages, check, clean_up, expect_code, summary

TAUGHT = [("What is the name of the blue cat?", "The blue cat is called Pip and lives on a boat."),
          ("Where does Pip sleep?", "Pip sleeps in a red box near the window."),
          ("What does Pip eat?", "Pip eats fish and warm bread every morning.")]


def examples(pb, pairs):
    return [pb.Example(question=q, answer=a) for q, a in pairs]


def prompt(question):
    return "Question: %s\nAnswer:" % question


def finish(c, pb, job_id):
    return list(c.stream("WatchJob", pb.JobRequest(job_id=job_id), pb.Job, timeout=600))[-1]


def check_finetune(args, pb, c, root, work):
    before = c.generate(prompt(TAUGHT[0][0]), 16)[0]
    job = c.unary("StartFinetune", pb.StartFinetuneRequest(
        output_path="models/taught.gguf", data=examples(pb, TAUGHT), steps=60,
        learning_rate=0.005), pb.Job)
    out = os.path.join(os.path.realpath(root), "models", "taught.gguf")
    check(job.method == "finetune" and job.adapter_name == "" and job.output_path == out,
          "the finetune job names its method and output (%s, %s)" % (job.method, job.output_path))
    done = finish(c, pb, job.id)
    check(done.state == pb.Job.SUCCEEDED, "the finetune job succeeds (%s)" % done.error)
    check(done.step == done.total_steps == 60, "it ran 60 steps (%d/%d)"
          % (done.step, done.total_steps))
    check(done.loss < 0.5 * done.initial_retain_loss, "its NLL fell from %.3f to %.3f"
          % (done.initial_retain_loss, done.loss))
    check(os.path.exists(out), "the model file was written")
    check([n for n in os.listdir(os.path.dirname(out)) if "partial" in n] == [],
          "no partial file is left")
    check(c.generate(prompt(TAUGHT[0][0]), 16)[0] == before, "the served model answers as before")
    check_taught_model(args, pb, out, work)
    return out


def check_taught_model(args, pb, path, work):
    """A second server on the written file: it learned the answers, and it has no data root."""
    server = Server(args.server, path, os.path.join(work, "adapters2"),
                    os.path.join(work, "server2.log"))
    try:
        c = Client(pb, server.port)
        for question, answer in TAUGHT:
            text = c.generate(prompt(question), 40)[0]
            check(text.strip().startswith(answer), "the new model answers %r with %r"
                  % (question, text))
        expect_code(lambda: c.unary("StartFinetune", pb.StartFinetuneRequest(
            output_path="x.gguf", data=examples(pb, TAUGHT)), pb.Job),
            grpc.StatusCode.FAILED_PRECONDITION, "StartFinetune without a data root", "data-root")
    finally:
        server.stop()


def check_bad_requests(pb, c, out):
    data = examples(pb, TAUGHT)
    bad = [("models/a.gguf", [], grpc.StatusCode.INVALID_ARGUMENT, "data"),
           ("models/taught.gguf", data, grpc.StatusCode.ALREADY_EXISTS, "exists"),
           ("../outside.gguf", data, grpc.StatusCode.PERMISSION_DENIED, "data root"),
           ("nope/a.gguf", data, grpc.StatusCode.NOT_FOUND, "nope"),
           ("models/a.txt", data, grpc.StatusCode.INVALID_ARGUMENT, ".gguf")]
    for path, items, code, needle in bad:
        try:
            c.unary("StartFinetune", pb.StartFinetuneRequest(output_path=path, data=items), pb.Job)
            check(False, "StartFinetune to %r with %d examples succeeded" % (path, len(items)))
        except grpc.RpcError as e:
            ok = (code is None or e.code() == code) and needle in (e.details() or "")
            check(ok, "StartFinetune to %r -> %s: %s" % (path, e.code().name, e.details()))
    check(os.path.getsize(out) > 0, "the existing file is untouched")


def check_cancel(pb, c, root):
    job = c.unary("StartFinetune", pb.StartFinetuneRequest(
        output_path="models/never.gguf", data=examples(pb, TAUGHT), steps=100000), pb.Job)
    wait_step(c, pb, job.id)
    c.unary("CancelJob", pb.JobRequest(job_id=job.id), pb.Job)
    done = finish(c, pb, job.id)
    check(done.state == pb.Job.CANCELLED, "a cancelled finetune job ends CANCELLED (%s)"
          % pb.Job.State.Name(done.state))
    left = [n for n in os.listdir(os.path.join(root, "models")) if n.startswith("never")]
    check(left == [], "a cancelled finetune job leaves no file (%s)" % left)


def wait_step(c, pb, job_id):
    deadline = time.time() + 120
    while time.time() < deadline:
        j = c.unary("GetJob", pb.JobRequest(job_id=job_id), pb.Job)
        if j.state == pb.Job.RUNNING and j.step > 0:
            return j
        time.sleep(0.1)
    return j


def check_resume(args, pb, work, root):
    """A finetune job stopped by SIGTERM is listed INTERRUPTED after a restart and resumes."""
    extra = ["--data-root", root]
    adapters = os.path.join(work, "adapters3")
    server = Server(args.server, args.model, adapters, os.path.join(work, "server3.log"),
                    extra=extra)
    c = Client(pb, server.port)
    job = c.unary("StartFinetune", pb.StartFinetuneRequest(
        output_path="models/resumed.gguf", data=examples(pb, TAUGHT), steps=150), pb.Job)
    wait_step(c, pb, job.id)
    server.stop()
    server = Server(args.server, args.model, adapters, os.path.join(work, "server3.log"),
                    extra=extra)
    try:
        c = Client(pb, server.port)
        j = c.unary("GetJob", pb.JobRequest(job_id=job.id), pb.Job)
        check(j.state == pb.Job.INTERRUPTED and j.method == "finetune"
              and j.output_path.endswith("resumed.gguf"),
              "after a restart the finetune job is INTERRUPTED (%s, %s, %s)"
              % (pb.Job.State.Name(j.state), j.method, j.output_path))
        c.unary("ResumeJob", pb.JobRequest(job_id=job.id), pb.Job)
        done = finish(c, pb, job.id)
        check(done.state == pb.Job.SUCCEEDED and os.path.exists(j.output_path),
              "the resumed finetune job writes its file (%s)" % done.error)
    finally:
        server.stop()


SPLITS = ["forget01", "retain", "real_authors", "world_facts"]


def copy_tofu(tofu, root):
    """The first three questions of every split, under the data root."""
    os.makedirs(os.path.join(root, "tofu"))
    os.makedirs(os.path.join(root, "results"))
    for split in SPLITS:
        name = split + "_perturbed.jsonl"
        with open(os.path.join(tofu, name)) as f:
            lines = f.readlines()[:3]
        with open(os.path.join(root, "tofu", name), "w") as f:
            f.writelines(lines)
    with open(os.path.join(tofu, "full.jsonl")) as f:
        lines = f.readlines()[2000:2003]
    with open(os.path.join(root, "unprotected.jsonl"), "w") as f:
        f.writelines(lines)


def check_evaluation(args, pb, c, root, work):
    job = c.unary("StartEvaluation", pb.StartEvaluationRequest(
        adapter="none", tofu_path="tofu", limit=2, max_tokens=24,
        unprotected_path="unprotected.jsonl", output_path="results/base.json"), pb.Job)
    check(job.method == "evaluate" and job.total_steps == 5,
          "the evaluation job has one step per split (%s, %d)" % (job.method, job.total_steps))
    done = finish(c, pb, job.id)
    check(done.state == pb.Job.SUCCEEDED and done.step == 5,
          "the evaluation job succeeds (%s, step %d)" % (done.error, done.step))
    if done.state != pb.Job.SUCCEEDED:
        return
    summary_json = json.loads(done.result)
    check(sorted(summary_json["splits"]) == ["forget", "real_authors", "retain", "unprotected",
                                             "world_facts"] and summary_json["adapter"] == "",
          "the result names every split and the model alone")
    check("generated" not in summary_json["splits"]["forget"], "the result leaves out answers")
    with open(os.path.join(root, "results", "base.json")) as f:
        full = json.load(f)
    cli_path = os.path.join(work, "cli.json")
    subprocess.run([args.eval, "--model", args.model, "--tofu", os.path.join(root, "tofu"),
                    "--limit", "2", "--max-tokens", "24", "--unprotected",
                    os.path.join(root, "unprotected.jsonl"), "--json", cli_path],
                   check=True, stderr=subprocess.DEVNULL)
    with open(cli_path) as f:
        cli = json.load(f)
    measured = (full.pop("adapter", None), full.pop("adapter_version", None))
    check(measured == ("", 0), "the full result names the model alone (%s)" % (measured,))
    check(full == cli, "the job's full result equals asu-eval's for the same files")
    check(summary_json["selectivity"] == cli["selectivity"]
          and summary_json["model_utility"] == cli["model_utility"],
          "the summary's selectivity and utility are asu-eval's")


def check_bad_evaluations(pb, c):
    bad = [({}, grpc.StatusCode.INVALID_ARGUMENT, "tofu_path"),
           ({"tofu_path": "../"}, grpc.StatusCode.PERMISSION_DENIED, "tofu_path"),
           ({"tofu_path": "nope"}, grpc.StatusCode.NOT_FOUND, "nope"),
           ({"tofu_path": "tofu", "forget_split": "forget02"}, grpc.StatusCode.INVALID_ARGUMENT,
            "forget_split"),
           ({"tofu_path": "tofu", "adapter": "ghost"}, grpc.StatusCode.NOT_FOUND, "ghost"),
           ({"tofu_path": "tofu", "reference_path": "missing.json"}, grpc.StatusCode.NOT_FOUND,
            "reference_path"),
           ({"tofu_path": "tofu", "output_path": "results/base.json"},
            grpc.StatusCode.ALREADY_EXISTS, "exists"),
           ({"tofu_path": "tofu", "max_tokens": 5000}, grpc.StatusCode.RESOURCE_EXHAUSTED,
            "max_tokens")]
    for fields, code, needle in bad:
        expect_code(lambda: c.unary("StartEvaluation", pb.StartEvaluationRequest(**fields), pb.Job),
                    code, "StartEvaluation %s" % fields, needle)


def main():
    ap = argparse.ArgumentParser()
    for name in ("server", "eval", "model", "tofu", "proto"):
        ap.add_argument("--" + name, required=True)
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="asu-tasks.")
    pb = build_messages(args.proto, work)
    root = os.path.join(work, "root")
    os.makedirs(os.path.join(root, "models"))
    copy_tofu(args.tofu, root)
    server = Server(args.server, args.model, os.path.join(work, "adapters"),
                    os.path.join(work, "server.log"), extra=["--data-root", root])
    try:
        c = Client(pb, server.port)
        out = check_finetune(args, pb, c, root, work)
        check_bad_requests(pb, c, out)
        check_cancel(pb, c, root)
        check_evaluation(args, pb, c, root, work)
        check_bad_evaluations(pb, c)
        check(server.stop() == 0, "the server exits 0 on SIGTERM")
        check_resume(args, pb, work, root)
    finally:
        server.stop()
        clean_up(work)
    return summary("task jobs")


if __name__ == "__main__":
    sys.exit(main())
