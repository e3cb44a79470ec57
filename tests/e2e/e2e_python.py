"""End-to-end test of asu-server through a Python gRPC client.

The client is grpcio with messages that protoc generates from proto/asu/v1/asu.proto at test
time. The checks cover streaming generation and its cancellation, malformed and invalid
requests, unlearning jobs watched to their end, job cancellation, adapters, and hot swap while a
generation runs.

usage: /usr/bin/python3 e2e_python.py ASU_SERVER MODEL.gguf PROTO_DIR
Exits 77 (skipped) when grpcio, protobuf or protoc is missing."""

import math
import os
import shutil
import sys
import tempfile
import threading
import time

SKIP = 77

try:
    import grpc
except ImportError:
    print("grpcio is not importable; run with /usr/bin/python3")
    sys.exit(SKIP)

from asu_grpc import FAILS, SERVICE, Client, Server, build_messages, check, expect_code


def examples(pb, pairs):
    return [pb.Example(question=q, answer=a) for q, a in pairs]


def main():
    if len(sys.argv) != 4:
        print(__doc__)
        return 2
    server_bin, model, proto_dir = sys.argv[1:]
    work = tempfile.mkdtemp(prefix="asu-e2e-py.")
    server = None
    try:
        pb = build_messages(proto_dir, work)
        adapters = os.path.join(work, "adapters")
        server = Server(server_bin, model, adapters, os.path.join(work, "server1.log"))
        c = Client(pb, server.port)
        try:
            Server(server_bin, model, os.path.join(work, "adapters2"),
                   os.path.join(work, "clash.log"), port=server.port).stop()
            check(False, "a second server started on port %d, which the first one serves"
                  % server.port)
        except RuntimeError:
            check(True, "a second server on a port in use exits without listening")
        run_checks(pb, c, server)
        rc = server.stop()
        check(rc == 0, "server exits 0 on SIGTERM (got %s)" % rc)

        server = Server(server_bin, model, adapters, os.path.join(work, "server2.log"))
        c = Client(pb, server.port)
        lst = c.unary("ListAdapters", pb.ListAdaptersRequest(), pb.ListAdaptersResponse)
        names = {a.name: (a.version, a.active) for a in lst.adapters}
        check(names.get("py1") == (3, True) and lst.active == "py1",
              "after restart py1 version 3 (the continual one) is active: %s" % names)
        jobs = c.unary("ListJobs", pb.ListJobsRequest(), pb.ListJobsResponse).jobs
        check(any(j.start_adapter == "py1" and j.start_version == 2 for j in jobs),
              "after restart the continual job still names py1 version 2 as its start")
        rc = server.stop()
        check(rc == 0, "second server exits 0 on SIGTERM (got %s)" % rc)
        server = None
    finally:
        if server:
            server.stop()
        if FAILS:
            for name in sorted(os.listdir(work)):
                if name.endswith(".log"):
                    with open(os.path.join(work, name)) as f:
                        print("---", name)
                        print("".join(f.readlines()[-40:]))
        shutil.rmtree(work, ignore_errors=True)
    if FAILS:
        print("e2e python: %d failures" % len(FAILS))
        return 1
    print("e2e python: all checks passed")
    return 0


def wait_running(c, pb, job_id, seconds=60):
    end = time.time() + seconds
    while time.time() < end:
        j = c.unary("GetJob", pb.JobRequest(job_id=job_id), pb.Job)
        if j.state != pb.Job.QUEUED:
            return j
        time.sleep(0.05)
    return j


def run_checks(pb, c, server):
    forget = examples(pb, [("What is the name of Lily's dog?", "Lily's dog is called Max."),
                           ("Where does Max sleep?", "Max sleeps under the big tree.")])
    retain = examples(pb, [("What color is the sky?", "The sky is blue."),
                           ("", "Once upon a time, there was a little girl named Sue.")])

    # Generate: pieces, then one final message with the counts.
    msgs = list(c.stream("Generate", pb.GenerateRequest(prompt="Once upon a time", max_tokens=12),
                         pb.GenerateResponse))
    final = msgs[-1] if msgs else None
    check(final is not None and final.done and final.completion_tokens == len(msgs) - 1
          and final.adapter == "", "Generate streams %d pieces and a final message" % len(msgs))
    text = "".join(m.text for m in msgs)
    check(len(msgs) >= 2, "Generate text %r" % text)

    # A client that cancels mid-stream stops the generation; the server keeps serving.
    call = c.stream("Generate", pb.GenerateRequest(prompt="Once", max_tokens=4000, seed=3,
                                                   temperature=0.8, top_p=0.9),
                    pb.GenerateResponse)
    got = 0
    for _ in call:
        got += 1
        if got == 2:
            call.cancel()
            break
    check(got == 2, "Generate cancelled by the client after 2 pieces")
    c.unary("ListAdapters", pb.ListAdaptersRequest(), pb.ListAdaptersResponse)
    check(True, "server answers after a cancelled Generate")

    # Malformed bytes and unknown methods.
    for method in ["Generate", "StartUnlearning", "GetJob", "ActivateAdapter"]:
        expect_code(lambda: list(c.channel.unary_stream(SERVICE + method)(b"\xff\xff\xff\x07"))
                    if method == "Generate" else c.raw(method, b"\xff\xff\xff\x07"),
                    grpc.StatusCode.INVALID_ARGUMENT, "malformed %s request" % method)
    expect_code(lambda: c.raw("NoSuchMethod", b""), grpc.StatusCode.UNIMPLEMENTED,
                "unknown method")

    # Invalid fields, each named in the message.
    def gen(**kw):
        return lambda: list(c.stream("Generate", pb.GenerateRequest(**kw), pb.GenerateResponse))
    expect_code(gen(prompt="x", top_p=math.nan), grpc.StatusCode.INVALID_ARGUMENT,
                "Generate top_p NaN", "top_p")
    expect_code(gen(prompt="x" * 20000), grpc.StatusCode.RESOURCE_EXHAUSTED,
                "Generate prompt too long", "prompt")
    expect_code(gen(prompt="x", adapter="nosuch"), grpc.StatusCode.NOT_FOUND,
                "Generate unknown adapter", "nosuch")

    def start(**kw):
        req = pb.StartUnlearningRequest(**kw)
        return lambda: c.unary("StartUnlearning", req, pb.Job)
    base = dict(adapter_name="py1", forget=forget, retain=retain)
    expect_code(start(**dict(base, tau_layers=[0, 99])), grpc.StatusCode.INVALID_ARGUMENT,
                "tau_layers out of range", "tau_layers[1]")
    expect_code(start(**dict(base, lora_targets=["q", "x"])), grpc.StatusCode.INVALID_ARGUMENT,
                "unknown lora target", "lora_targets[1]")
    expect_code(start(**dict(base, prompt_template="Q: A:")), grpc.StatusCode.INVALID_ARGUMENT,
                "template without placeholder", "prompt_template")
    expect_code(start(**dict(base, forget_weight=-1.0)), grpc.StatusCode.INVALID_ARGUMENT,
                "negative forget_weight", "forget_weight must be finite and >= 0, got -1")
    expect_code(start(**dict(base, epochs=3, steps=4)), grpc.StatusCode.INVALID_ARGUMENT,
                "epochs and steps differ", "epochs (3) and steps (4)")
    expect_code(start(**dict(base, weight_decay=-0.5)), grpc.StatusCode.INVALID_ARGUMENT,
                "negative weight decay", "weight_decay")
    expect_code(start(**dict(base, epochs=100001)), grpc.StatusCode.RESOURCE_EXHAUSTED,
                "epochs over the limit", "steps must be <= 100000, got 100001")
    expect_code(start(**dict(base, tau=math.inf)), grpc.StatusCode.INVALID_ARGUMENT,
                "infinite tau", "tau")
    expect_code(start(**dict(base, forget=examples(pb, [("q", "")]))),
                grpc.StatusCode.INVALID_ARGUMENT, "empty answer", "forget[0].answer")
    expect_code(start(**dict(base, retain=[])), grpc.StatusCode.INVALID_ARGUMENT,
                "no retain examples", "retain")
    expect_code(start(**dict(base, retain=examples(pb, [("q", "a")] * 10001))),
                grpc.StatusCode.RESOURCE_EXHAUSTED, "too many retain examples", "retain")
    expect_code(start(**dict(base, adapter_name="x" * 65)), grpc.StatusCode.INVALID_ARGUMENT,
                "adapter_name too long", "adapter_name")
    expect_code(lambda: c.unary("GetJob", pb.JobRequest(job_id="nope"), pb.Job),
                grpc.StatusCode.NOT_FOUND, "GetJob unknown", "nope")
    expect_code(lambda: c.unary("CancelJob", pb.JobRequest(job_id="nope"), pb.Job),
                grpc.StatusCode.NOT_FOUND, "CancelJob unknown")
    expect_code(lambda: list(c.stream("WatchJob", pb.JobRequest(job_id=""), pb.Job)),
                grpc.StatusCode.INVALID_ARGUMENT, "WatchJob empty id", "job_id")
    expect_code(lambda: c.unary("ActivateAdapter", pb.ActivateAdapterRequest(name="nosuch"),
                                pb.Adapter), grpc.StatusCode.NOT_FOUND, "Activate unknown")

    # A job watched to success, activated.
    job = c.unary("StartUnlearning", pb.StartUnlearningRequest(
        adapter_name="py1", forget=forget, retain=retain, heldout=retain[1:], method="asu_kl",
        steps=3, lora_rank=4, lora_targets=["q", "v"], activate_on_success=True), pb.Job)
    check(job.id and job.state in (pb.Job.QUEUED, pb.Job.RUNNING),
          "StartUnlearning returns job %s" % job.id)
    snaps = list(c.stream("WatchJob", pb.JobRequest(job_id=job.id), pb.Job))
    steps = [s.step for s in snaps]
    check(snaps and snaps[-1].state == pb.Job.SUCCEEDED and snaps[-1].adapter_version == 1,
          "WatchJob ends SUCCEEDED (%d snapshots, steps %s, error %r)"
          % (len(snaps), steps, snaps[-1].error if snaps else ""))
    check(steps == sorted(steps) and snaps[-1].step == snaps[-1].total_steps == 3,
          "WatchJob steps increase to the total")
    check(snaps[-1].method == "asu_kl", "job method asu_kl")
    lst = c.unary("ListAdapters", pb.ListAdaptersRequest(), pb.ListAdaptersResponse)
    py1 = [a for a in lst.adapters if a.name == "py1"]
    check(py1 and py1[0].active and py1[0].version == 1 and py1[0].rank == 4
          and lst.active == "py1", "py1 listed: %s" % lst)

    # Hot swap: a generation pinned to py1 v1 runs while v2 is trained and installed.
    result = {}

    def long_generation():
        ms = list(c.stream("Generate", pb.GenerateRequest(prompt="Once", max_tokens=300),
                           pb.GenerateResponse))
        result["final"] = ms[-1]
    t = threading.Thread(target=long_generation)
    t.start()
    job2 = c.unary("StartUnlearning", pb.StartUnlearningRequest(
        adapter_name="py1", forget=forget, retain=retain, steps=2, lora_rank=4), pb.Job)
    snaps = list(c.stream("WatchJob", pb.JobRequest(job_id=job2.id), pb.Job))
    t.join(300)
    check(snaps[-1].state == pb.Job.SUCCEEDED and snaps[-1].adapter_version == 2,
          "py1 version 2 trained during a generation")
    fin = result.get("final")
    check(fin is not None and fin.done and fin.adapter == "py1",
          "the generation finished with adapter %s version %s"
          % (fin.adapter if fin else None, fin.adapter_version if fin else None))
    lst = c.unary("ListAdapters", pb.ListAdaptersRequest(), pb.ListAdaptersResponse)
    check([(a.name, a.version, a.active) for a in lst.adapters] == [("py1", 2, True)],
          "py1 version 2 replaced version 1 and stays active")
    final = list(c.stream("Generate", pb.GenerateRequest(prompt="x", max_tokens=2),
                          pb.GenerateResponse))[-1]
    check(final.adapter == "py1" and final.adapter_version == 2, "Generate uses py1 v2")

    # A baseline method through the server: its name comes back on the job.
    npo = c.unary("StartUnlearning", pb.StartUnlearningRequest(
        adapter_name="npo1", forget=forget, retain=retain, method="npo", beta=0.2, steps=2,
        lora_rank=4), pb.Job)
    snaps = list(c.stream("WatchJob", pb.JobRequest(job_id=npo.id), pb.Job))
    check(snaps[-1].state == pb.Job.SUCCEEDED and snaps[-1].method == "npo",
          "an npo job succeeds (%s, %s)" % (snaps[-1].method, snaps[-1].error))
    expect_code(lambda: c.unary("StartUnlearning", pb.StartUnlearningRequest(
        adapter_name="bad", forget=forget, retain=retain, method="npo", beta=-1.0), pb.Job),
        grpc.StatusCode.INVALID_ARGUMENT, "negative beta", "beta")

    # Cancel a running job: it ends CANCELLED and leaves no adapter.
    job3 = c.unary("StartUnlearning", pb.StartUnlearningRequest(
        adapter_name="pycancel", forget=forget, retain=retain, steps=100000), pb.Job)
    j = wait_running(c, pb, job3.id)
    check(j.state == pb.Job.RUNNING, "job %s running" % job3.id)
    j = c.unary("CancelJob", pb.JobRequest(job_id=job3.id), pb.Job)
    if j.state == pb.Job.RUNNING:
        j = list(c.stream("WatchJob", pb.JobRequest(job_id=job3.id), pb.Job))[-1]
    check(j.state == pb.Job.CANCELLED, "CancelJob -> %s" % pb.Job.State.Name(j.state))
    lst = c.unary("ListAdapters", pb.ListAdaptersRequest(), pb.ListAdaptersResponse)
    check("pycancel" not in [a.name for a in lst.adapters], "no adapter from the cancelled job")

    # Deactivate / activate.
    d = c.unary("DeactivateAdapter", pb.DeactivateAdapterRequest(),
                pb.DeactivateAdapterResponse)
    check(d.previous == "py1", "DeactivateAdapter previous py1")
    final = list(c.stream("Generate", pb.GenerateRequest(prompt="x", max_tokens=2),
                          pb.GenerateResponse))[-1]
    check(final.adapter == "", "Generate uses the base model when none is active")
    a = c.unary("ActivateAdapter", pb.ActivateAdapterRequest(name="py1"), pb.Adapter)
    check(a.active and a.version == 2, "ActivateAdapter py1")

    # Continual unlearning builds on the active adapter: its rank, not the requested one.
    before = {x.name: x for x in c.unary("ListAdapters", pb.ListAdaptersRequest(),
                                         pb.ListAdaptersResponse).adapters}["py1"]
    second = examples(pb, [("Who baked the cake?", "Tom baked the cake with his mom.")])
    cont = c.unary("StartUnlearning", pb.StartUnlearningRequest(
        adapter_name="py1", forget=second, retain=retain, steps=2, lora_rank=before.rank + 1,
        continual=True, activate_on_success=True), pb.Job)
    check(cont.start_adapter == "py1" and cont.start_version == before.version,
          "a continual job builds on py1 version %d (%s %d)"
          % (before.version, cont.start_adapter, cont.start_version))
    done = list(c.stream("WatchJob", pb.JobRequest(job_id=cont.id), pb.Job))[-1]
    after = {x.name: x for x in c.unary("ListAdapters", pb.ListAdaptersRequest(),
                                        pb.ListAdaptersResponse).adapters}["py1"]
    check(done.state == pb.Job.SUCCEEDED and after.version == before.version + 1
          and after.active and after.rank == before.rank,
          "the continual job made py1 version %d, rank %d, active (%s)"
          % (after.version, after.rank, done.error))
    c.unary("DeactivateAdapter", pb.DeactivateAdapterRequest(), pb.DeactivateAdapterResponse)
    expect_code(lambda: c.unary("StartUnlearning", pb.StartUnlearningRequest(
        adapter_name="py2", forget=second, retain=retain, steps=2, continual=True), pb.Job),
        grpc.StatusCode.FAILED_PRECONDITION, "continual with no active adapter", "active")
    c.unary("ActivateAdapter", pb.ActivateAdapterRequest(name="py1"), pb.Adapter)


if __name__ == "__main__":
    sys.exit(main())
