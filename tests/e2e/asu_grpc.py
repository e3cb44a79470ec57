"""Helpers for Python tests of asu-server: message classes generated with protoc, a server
process on a free loopback port, and a grpcio client of the asu.v1.Asu service."""

import os
import re
import shutil
import signal
import subprocess
import sys

import grpc

SKIP = 77
SERVICE = "/asu.v1.Asu/"


def build_messages(proto_dir, out_dir):
    """Generates asu_pb2 from proto_dir/asu/v1/asu.proto into out_dir and imports it."""
    protoc = shutil.which("protoc")
    if not protoc:
        print("protoc not found (apt-get install protobuf-compiler)")
        sys.exit(SKIP)
    subprocess.run([protoc, "--proto_path=" + proto_dir, "--python_out=" + out_dir,
                    os.path.join(proto_dir, "asu", "v1", "asu.proto")], check=True)
    sys.path.insert(0, out_dir)
    from asu.v1 import asu_pb2
    return asu_pb2


FAILS = []


def check(cond, what):
    """Prints one check's result; failures are collected in FAILS."""
    if cond:
        print("ok:", what)
    else:
        print("FAIL:", what)
        FAILS.append(what)


def expect_code(fn, code, what, needle=None):
    """Checks that fn() fails with status code and, when given, needle in the details."""
    try:
        fn()
    except grpc.RpcError as e:
        ok = e.code() == code and (needle is None or needle in (e.details() or ""))
        check(ok, "%s -> %s: %s" % (what, e.code().name, e.details()))
        return
    check(False, "%s succeeded, wanted %s" % (what, code.name))


def clean_up(work):
    """Removes the work folder when every check passed, else keeps it for its logs."""
    if FAILS:
        print("logs kept in", work)
    else:
        shutil.rmtree(work, ignore_errors=True)


def summary(name):
    """Prints the outcome of the checks and returns the exit status."""
    if FAILS:
        print("%s: %d failures" % (name, len(FAILS)))
        return 1
    print("%s: all checks passed" % name)
    return 0


class Server:
    """asu-server on 127.0.0.1 with a port the system picks; stderr goes to log_path. command
    replaces the whole command line when given (another host of the plugin)."""

    def __init__(self, binary, model, adapters, log_path, port=0, extra=(), command=None):
        self.log = open(log_path, "a")
        if command is None:
            command = [binary, "--model", model, "--listen", "127.0.0.1:%d" % port,
                       "--adapters", adapters] + list(extra)
        self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=self.log, text=True)
        line = self.proc.stdout.readline()
        m = re.match(r"listening on 127\.0\.0\.1:(\d+)$", line.strip())
        if not m:
            self.stop()
            raise RuntimeError("the server did not print its port (%r); see %s" % (line, log_path))
        self.port = int(m.group(1))
        self.address = "127.0.0.1:%d" % self.port

    def stop(self):
        """Sends SIGTERM, waits, and returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(120)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if not self.log.closed:
            self.log.close()
        return self.proc.returncode


class Client:
    def __init__(self, pb, port):
        opts = [("grpc.max_receive_message_length", 64 << 20),
                ("grpc.max_send_message_length", 64 << 20)]
        self.pb = pb
        self.channel = grpc.insecure_channel("127.0.0.1:%d" % port, options=opts)
        grpc.channel_ready_future(self.channel).result(timeout=60)

    def unary(self, method, req, resp_type, timeout=600):
        return self.channel.unary_unary(
            SERVICE + method, request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=resp_type.FromString)(req, timeout=timeout)

    def stream(self, method, req, resp_type, timeout=None):
        return self.channel.unary_stream(
            SERVICE + method, request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=resp_type.FromString)(req, timeout=timeout)

    def raw(self, method, data):
        return self.channel.unary_unary(SERVICE + method)(data, timeout=30)

    def generate(self, prompt, max_tokens, adapter=""):
        """Returns the generated text and its token ids."""
        text, tokens = [], []
        req = self.pb.GenerateRequest(prompt=prompt, max_tokens=max_tokens, adapter=adapter)
        for msg in self.stream("Generate", req, self.pb.GenerateResponse, timeout=600):
            if msg.done:
                break
            text.append(msg.text)
            tokens.append(msg.token_id)
        return "".join(text), tokens
