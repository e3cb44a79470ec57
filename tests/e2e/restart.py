"""Restarts and crashes of asu-server, with Debian's python3-grpcio as the client:

- a job killed with SIGKILL after a checkpoint is listed INTERRUPTED on restart, resumes from its
  checkpoint with ResumeJob, and ends on the adapter that an uninterrupted run of the same job
  produces;
- a SIGTERM during a job records it INTERRUPTED, finished jobs stay listed, and an unloaded
  adapter stays unloaded;
- SIGKILL at random moments while jobs save adapters leaves nothing corrupt: after each restart
  every listed adapter generates, and no work directory is left behind.

usage: restart.py --server BIN --model GGUF --proto DIR
"""

import argparse
import json
import os
import random
import signal
import struct
import sys
import tempfile
import time

try:
    import grpc
except ImportError:
    print("grpcio is not importable; run with /usr/bin/python3")
    sys.exit(77)

from asu_grpc import Client, Server, build_messages, check, clean_up, expect_code, summary
from serving import compile_flat

OIP = "/inference.GRPCInferenceService/"

FORGET = [("What is the name of Lily's dog?", "Lily's dog is called Max."),
          ("Where does Max sleep?", "Max sleeps under the big tree.")]
RETAIN = [("What color is the sky?", "The sky is blue.")]


def job_request(pb, name, steps, **kw):
    ex = [pb.Example(question=q, answer=a) for q, a in FORGET]
    keep = [pb.Example(question=q, answer=a) for q, a in RETAIN]
    return pb.StartUnlearningRequest(adapter_name=name, forget=ex, retain=keep, steps=steps,
                                     lora_rank=4, seed=11, **kw)


def watch(c, pb, job_id, until=None):
    """Snapshots of a job until it stops, or until until(snapshot) holds."""
    snaps = []
    for snap in c.stream("WatchJob", pb.JobRequest(job_id=job_id), pb.Job, timeout=600):
        snaps.append(snap)
        if until and until(snap):
            break
    return snaps


STARTED = []


def start(args, work, adapters):
    """Starts asu-server; every server started is stopped at the end, whatever fails."""
    server = Server(args.server, args.model, adapters, os.path.join(work, "server.log"))
    STARTED.append(server)
    return server


def kill(server):
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait()
    server.log.close()


def read_tensors(directory):
    with open(os.path.join(directory, "adapter_model.safetensors"), "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        a, b = t["data_offsets"]
        out[name] = struct.unpack("<%df" % ((b - a) // 4), data[a:b])
    return out


def max_difference(dir_a, dir_b):
    a, b = read_tensors(dir_a), read_tensors(dir_b)
    if a.keys() != b.keys():
        return float("inf")
    return max(max(abs(x - y) for x, y in zip(a[k], b[k])) for k in a)


def check_kill_and_resume(args, pb, oip, work, adapters):
    server = start(args, work, adapters)
    c = Client(pb, server.port)
    job = c.unary("StartUnlearning", job_request(pb, "resumed", 40, checkpoint_every=5), pb.Job)
    watch(c, pb, job.id, until=lambda s: s.step >= 12)
    kill(server)

    server = start(args, work, adapters)
    c = Client(pb, server.port)
    listed = {j.id: j for j in c.unary("ListJobs", pb.ListJobsRequest(), pb.ListJobsResponse).jobs}
    j = listed.get(job.id)
    check(j is not None and j.state == pb.Job.INTERRUPTED and j.step >= 10 and j.step % 5 == 0,
          "killed job listed INTERRUPTED at a checkpoint step: %s" % ((j.state, j.step) if j else None,))
    expect_code(lambda: list(c.stream("Generate", pb.GenerateRequest(prompt="x", max_tokens=1,
                                                                     adapter="resumed"),
                                      pb.GenerateResponse)),
                grpc.StatusCode.FAILED_PRECONDITION, "the interrupted job left no adapter",
                "no saved version yet")
    checkpoint_step = j.step if j else 0
    resumed = c.unary("ResumeJob", pb.JobRequest(job_id=job.id), pb.Job)
    check(resumed.state in (pb.Job.QUEUED, pb.Job.RUNNING), "ResumeJob queues the job again")
    snaps = watch(c, pb, job.id)
    steps = [s.step for s in snaps if s.state == pb.Job.RUNNING and s.step > 0]
    check(snaps[-1].state == pb.Job.SUCCEEDED, "the resumed job succeeds (%s)" % snaps[-1].error)
    check(steps and min(steps) >= checkpoint_step,
          "the resumed job starts at its checkpoint, step %d (first step %s)"
          % (checkpoint_step, steps[:1]))
    expect_code(lambda: c.unary("ResumeJob", pb.JobRequest(job_id=job.id), pb.Job),
                grpc.StatusCode.FAILED_PRECONDITION, "resuming a finished job", "SUCCEEDED")

    whole = c.unary("StartUnlearning", job_request(pb, "whole", 40), pb.Job)
    check(watch(c, pb, whole.id)[-1].state == pb.Job.SUCCEEDED, "the uninterrupted run succeeds")
    diff = max_difference(os.path.join(adapters, "resumed"), os.path.join(adapters, "whole"))
    check(diff <= 1e-5, "resumed and uninterrupted adapters match (max difference %g)" % diff)
    left = os.listdir(os.path.join(adapters, ".jobs", job.id))
    check(left == ["job.json"], "a finished job keeps only its record: %s" % left)
    c.channel.unary_unary(OIP + "RepositoryModelUnload")(
        oip.RepositoryModelUnloadRequest(model_name="whole").SerializeToString(), timeout=60)
    return server, c


def check_unload_kept(c, pb, oip):
    """An adapter unloaded before a restart stays unloaded after it, until it is loaded."""
    def names():
        return [a.name for a in c.unary("ListAdapters", pb.ListAdaptersRequest(),
                                        pb.ListAdaptersResponse).adapters]
    unary = c.channel.unary_unary
    index = oip.RepositoryIndexResponse.FromString(
        unary(OIP + "RepositoryIndex")(oip.RepositoryIndexRequest().SerializeToString(),
                                       timeout=60))
    states = {m.name: m.state for m in index.models}
    check("whole" not in names() and states.get("whole") == "UNAVAILABLE",
          "an adapter unloaded before the restart is still unloaded: %s" % states.get("whole"))
    unary(OIP + "RepositoryModelLoad")(
        oip.RepositoryModelLoadRequest(model_name="whole").SerializeToString(), timeout=60)
    check("whole" in names(), "RepositoryModelLoad serves it again")


def check_sigterm(args, pb, oip, work, adapters, server, c):
    job = c.unary("StartUnlearning", job_request(pb, "stopped", 400, checkpoint_every=5), pb.Job)
    watch(c, pb, job.id, until=lambda s: s.step >= 6)
    queued = c.unary("StartUnlearning", job_request(pb, "waiting", 3), pb.Job)
    check(server.stop() == 0, "SIGTERM during a job exits 0")
    server = start(args, work, adapters)
    c = Client(pb, server.port)
    check_unload_kept(c, pb, oip)
    listed = {j.id: j for j in c.unary("ListJobs", pb.ListJobsRequest(), pb.ListJobsResponse).jobs}
    check(listed[job.id].state == pb.Job.INTERRUPTED and listed[queued.id].state ==
          pb.Job.INTERRUPTED, "running and queued jobs are INTERRUPTED after SIGTERM")
    step = listed[job.id].step
    check(step >= 5 and step % 5 == 0,
          "a job stopped by SIGTERM reports the step of its checkpoint (%d)" % step)
    finished = [j for j in listed.values() if j.state == pb.Job.SUCCEEDED]
    check(len(finished) == 2, "finished jobs stay listed after restarts (%d)" % len(finished))
    cancelled = c.unary("CancelJob", pb.JobRequest(job_id=job.id), pb.Job)
    check(cancelled.state == pb.Job.CANCELLED, "an interrupted job can be cancelled")
    left = os.listdir(os.path.join(adapters, ".jobs", job.id))
    check(left == ["job.json"], "a cancelled job leaves no data behind: %s" % left)
    fresh = c.unary("StartUnlearning", job_request(pb, "fresh", 2), pb.Job)
    check(int(fresh.id.split("-")[1]) > int(queued.id.split("-")[1]),
          "job ids continue after a restart (%s after %s)" % (fresh.id, queued.id))
    watch(c, pb, fresh.id)
    return server


def check_random_kills(args, pb, work, adapters, server):
    """SIGKILL at random moments around the end of short jobs, when they save their adapters."""
    rng = random.Random(5)
    saved = 0
    for i in range(8):
        c = Client(pb, server.port)
        name = "churn%d" % i
        job = c.unary("StartUnlearning", job_request(pb, name, 2), pb.Job)
        watch(c, pb, job.id, until=lambda s: s.step >= s.total_steps)
        time.sleep(rng.uniform(0.0, 0.05))
        kill(server)
        server = start(args, work, adapters)
        c = Client(pb, server.port)
        names = [a.name for a in c.unary("ListAdapters", pb.ListAdaptersRequest(),
                                         pb.ListAdaptersResponse).adapters]
        state = c.unary("GetJob", pb.JobRequest(job_id=job.id), pb.Job).state
        saved += name in names
        consistent = (name in names) == (state == pb.Job.SUCCEEDED)
        ok = all(c.generate("Once", 2, adapter=n)[1] for n in names)
        leftovers = [n for n in os.listdir(adapters) if n.startswith(".asu-")]
        check(ok and consistent and not leftovers,
              "kill %d: %d adapters generate, %s listed %s with job %s, no work directories %s"
              % (i, len(names), name, name in names, pb.Job.State.Name(state), leftovers))
    print("adapters saved before the kill in %d of 8 runs" % saved)
    return server


def main():
    ap = argparse.ArgumentParser()
    for name in ("server", "model", "proto"):
        ap.add_argument("--" + name, required=True)
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="asu-restart.")
    pb = build_messages(args.proto, work)
    oip = compile_flat(args.proto, "inference/grpc_service.proto", work, "grpc_service_pb2")
    adapters = os.path.join(work, "adapters")
    server = None
    try:
        server, c = check_kill_and_resume(args, pb, oip, work, adapters)
        server = check_sigterm(args, pb, oip, work, adapters, server, c)
        server = check_random_kills(args, pb, work, adapters, server)
    finally:
        for started in STARTED:
            if started.proc.poll() is None:
                started.stop()
        clean_up(work)
    return summary("restart")


if __name__ == "__main__":
    sys.exit(main())
