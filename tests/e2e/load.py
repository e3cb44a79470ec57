"""Load on asu-server, with Debian's python3-grpcio as the client: concurrent clients generate
through both protocols while a job trains and an adapter gets new versions and is activated and
deactivated dozens of times.

Each version of the adapter "x" is one of three PEFT adapters written here, so its greedy text
identifies the version that produced it. Every response must carry the text of the version it reports,
no request may fail, and the server's resident memory must stay flat between the middle and the
end of the run.

usage: load.py --server BIN --model GGUF --proto DIR
"""

import argparse
import os
import sys
import tempfile
import threading
import time

try:
    import grpc
except ImportError:
    print("grpcio is not importable; run with /usr/bin/python3")
    sys.exit(77)

from asu_grpc import Client, Server, build_messages, check, clean_up, summary
from serving import (TOKEN, Stub, compile_flat, infer_text, repo_load, train_seed_adapter,
                     write_adapter)

CLIENTS = 6
CHURN_ROUNDS = 36
PROMPT = "Once upon a time"
TOKENS = 8


def resident_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Load:
    def __init__(self, stub, oip, pb, expected):
        self.stub, self.oip, self.pb, self.expected = stub, oip, pb, expected
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.requests = 0
        self.errors = []
        self.mismatches = []

    def record(self, version, text):
        want = self.expected[(version - 1) % 3] if version else self.expected["base"]
        with self.lock:
            self.requests += 1
            if text != want:
                self.mismatches.append((version, text, want))

    def infer_once(self):
        text, _, params = infer_text(self.stub, self.oip, "x", PROMPT, max_tokens=TOKENS)
        self.record(params["adapter_version"], text)

    def generate_once(self):
        """Generate with the active adapter: x at some version, or the base model."""
        pieces, last = [], None
        call = self.stub.channel.unary_stream(
            "/asu.v1.Asu/Generate", request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=self.pb.GenerateResponse.FromString)
        for msg in call(self.pb.GenerateRequest(prompt=PROMPT, max_tokens=TOKENS), timeout=120):
            if msg.done:
                last = msg
            else:
                pieces.append(msg.text)
        self.record(last.adapter_version if last.adapter == "x" else 0, "".join(pieces))

    def client(self, k):
        while not self.stop.is_set():
            try:
                self.infer_once() if k % 2 else self.generate_once()
            except grpc.RpcError as e:
                with self.lock:
                    self.errors.append("%s: %s" % (e.code().name, e.details()))

    def churn(self, root):
        """New versions of x, and activations and deactivations, while the clients run."""
        for i in range(CHURN_ROUNDS):
            try:
                # Version v of x is adapter p((v - 1) % 3): version 1 is p0, loaded before.
                repo_load(self.stub, self.oip, "x", "p%d" % ((i + 1) % 3))
                if i % 2 == 0:
                    self.stub.unary("/asu.v1.Asu/ActivateAdapter",
                                    self.pb.ActivateAdapterRequest(name="x"), self.pb.Adapter)
                else:
                    self.stub.unary("/asu.v1.Asu/DeactivateAdapter",
                                    self.pb.DeactivateAdapterRequest(),
                                    self.pb.DeactivateAdapterResponse)
            except grpc.RpcError as e:
                with self.lock:
                    self.errors.append("churn %d: %s: %s" % (i, e.code().name, e.details()))
            time.sleep(0.1)


def expected_texts(stub, oip, model, root, shapes, config):
    """The greedy text of each of the three adapters and of the base model."""
    out = {}
    for i in range(3):
        write_adapter(os.path.join(root, "p%d" % i), shapes, config, seed=40 + i)
        repo_load(stub, oip, "ref%d" % i, "p%d" % i)
        out[i] = infer_text(stub, oip, "ref%d" % i, PROMPT, max_tokens=TOKENS)[0]
    out["base"] = infer_text(stub, oip, model, PROMPT, max_tokens=TOKENS, adapter="none")[0]
    return out


def main():
    ap = argparse.ArgumentParser()
    for name in ("server", "model", "proto"):
        ap.add_argument("--" + name, required=True)
    args = ap.parse_args()
    model = os.path.basename(args.model)[:-len(".gguf")]
    work = tempfile.mkdtemp(prefix="asu-load.")
    pb = build_messages(args.proto, work)
    oip = compile_flat(args.proto, "inference/grpc_service.proto", work, "grpc_service_pb2")
    root = os.path.join(work, "root")
    os.makedirs(root)
    with open(os.path.join(work, "token"), "w") as f:
        f.write(TOKEN + "\n")
    adapters = os.path.join(work, "adapters")
    server = Server(args.server, args.model, adapters, os.path.join(work, "server.log"),
                    extra=["--data-root", root, "--auth-token-file", os.path.join(work, "token")])
    try:
        stub = Stub(grpc.insecure_channel(server.address), TOKEN)
        shapes, config = train_seed_adapter(stub, pb, adapters)
        expected = expected_texts(stub, oip, model, root, shapes, config)
        check(len({expected[0], expected[1], expected[2], expected["base"]}) == 4,
              "the three adapters and the base model generate four different texts")
        repo_load(stub, oip, "x", "p0")
        load = Load(stub, oip, pb, expected)
        ex = [pb.Example(question="Who is Basil?", answer="Basil is a baker.")]
        job = stub.unary("/asu.v1.Asu/StartUnlearning", pb.StartUnlearningRequest(
            adapter_name="trainee", forget=ex, retain=ex, steps=100000, lora_rank=4), pb.Job)
        for snap in Client(pb, server.port).stream("WatchJob", pb.JobRequest(job_id=job.id),
                                                   pb.Job, timeout=300):
            if snap.step >= 1:
                break
        step_before = snap.step
        clients = [threading.Thread(target=load.client, args=(k,)) for k in range(CLIENTS)]
        for t in clients:
            t.start()
        churn = threading.Thread(target=load.churn, args=(root,))
        churn.start()
        time.sleep(1.0)
        middle = resident_kib(server.proc.pid)
        churn.join()
        load.stop.set()
        for t in clients:
            t.join()
        end = resident_kib(server.proc.pid)
        state = Client(pb, server.port).unary("GetJob", pb.JobRequest(job_id=job.id), pb.Job)
        check(state.state == pb.Job.RUNNING and state.step > step_before,
              "the job trained during the load (steps %d to %d)" % (step_before, state.step))
        stub.unary("/asu.v1.Asu/CancelJob", pb.JobRequest(job_id=job.id), pb.Job)
        print("%d requests, %d versions of x, resident memory %d KiB in the middle and %d KiB "
              "at the end" % (load.requests, CHURN_ROUNDS + 1, middle, end))
        check(load.requests >= 50, "the clients made %d requests" % load.requests)
        check(not load.errors, "no request failed: %s" % load.errors[:3])
        check(not load.mismatches, "every response has the text of the version it reports: %s"
              % load.mismatches[:3])
        if "ASAN_OPTIONS" in os.environ:
            # The sanitizer's quarantine keeps freed memory, so the resident size grows. Its
            # leak check at exit (the exit status below) replaces this check.
            print("resident memory not checked under AddressSanitizer")
        else:
            check(end <= middle * 1.25 + 32 * 1024,
                  "resident memory stays flat (%d KiB, then %d KiB)" % (middle, end))
        status = server.stop()
        check(status == 0, "the server stops cleanly after the load (status %s)" % status)
    finally:
        if server.proc.poll() is None:
            server.stop()
        clean_up(work)
    return summary("load")


if __name__ == "__main__":
    sys.exit(main())
