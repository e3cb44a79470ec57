"""Serving checks with Debian's python3-grpcio as the client:

- a foreign host (plugin_host) loads the plugin with dlopen and serves its own method beside the
  plugin's services on one port, with room for one adapter on the device among three;
- asu-server serves the Open Inference Protocol, its model repository over PEFT adapters
  written here from scratch, and gRPC health checking;
- a bearer token guards the methods that change state, paths stay under the data root, limits
  return RESOURCE_EXHAUSTED, and malformed bytes get INVALID_ARGUMENT on every method;
- TLS with a self-signed certificate.

usage: serving.py --server BIN --cli BIN --host BIN --plugin LIB --model GGUF --proto DIR
"""

import argparse
import json
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile

try:
    import grpc
except ImportError:
    print("grpcio is not importable; run with /usr/bin/python3")
    sys.exit(77)

from asu_grpc import Server, build_messages, check, clean_up, expect_code, summary

TOKEN = "s3cret-token"
OIP = "/inference.GRPCInferenceService/"
HEALTH = "/grpc.health.v1.Health/"
ASU = "/asu.v1.Asu/"


def compile_flat(proto_dir, rel, out_dir, module):
    """Compiles one proto from its own directory so that its module has a flat name."""
    d = os.path.join(proto_dir, os.path.dirname(rel))
    subprocess.run(["protoc", "--proto_path=" + d, "--python_out=" + out_dir,
                    os.path.join(d, os.path.basename(rel))], check=True)
    sys.path.insert(0, out_dir)
    return __import__(module)


class Stub:
    """Calls any method of a channel with message classes, optionally with the token."""

    def __init__(self, channel, token=None):
        self.channel = channel
        self.md = [("authorization", "Bearer " + token)] if token else None

    def unary(self, method, req, resp_type, md=None):
        return self.channel.unary_unary(
            method, request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=resp_type.FromString)(req, timeout=120,
                                                        metadata=md or self.md)

    def raw(self, method, data, md=None):
        return self.channel.unary_unary(method)(data, timeout=60, metadata=md or self.md)


# ---- PEFT adapters written from scratch ----

def safetensors_bytes(tensors):
    """A safetensors file of F32 tensors: {name: (shape, values)}."""
    header, blobs, offset = {}, [], 0
    for name, (shape, values) in sorted(tensors.items()):
        blob = struct.pack("<%df" % len(values), *values)
        header[name] = {"dtype": "F32", "shape": list(shape),
                        "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(blobs)


def read_safetensors_shapes(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
    return {k: v["shape"] for k, v in header.items() if k != "__metadata__"}


def write_adapter(directory, shapes, config, seed, scale=0.5, dtype_of=None):
    """Writes adapter_config.json and adapter_model.safetensors with random values."""
    os.makedirs(directory, exist_ok=True)
    rng = random.Random(seed)
    tensors = {}
    for name, shape in shapes.items():
        count = shape[0] * shape[1]
        tensors[name] = (shape, [rng.uniform(-scale, scale) for _ in range(count)])
    data = safetensors_bytes(tensors)
    if dtype_of:
        data = data.replace(b'"F32"', b'"I32"', 1)
    with open(os.path.join(directory, "adapter_model.safetensors"), "wb") as f:
        f.write(data)
    with open(os.path.join(directory, "adapter_config.json"), "w") as f:
        json.dump(config, f)


def train_seed_adapter(stub, pb, adapters_dir):
    """Trains a one-step adapter to learn the model's tensor names and shapes."""
    ex = [pb.Example(question="Who is Basil?", answer="Basil is a baker.")]
    job = stub.unary(ASU + "StartUnlearning", pb.StartUnlearningRequest(
        adapter_name="seed", forget=ex, retain=ex, steps=1, lora_rank=4,
        lora_targets=["q", "v"]), pb.Job)
    for snap in stub.channel.unary_stream(
            ASU + "WatchJob", request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=pb.Job.FromString)(pb.JobRequest(job_id=job.id), timeout=300):
        last = snap
    check(last.state == pb.Job.SUCCEEDED, "seed adapter trained (%s)" % last.error)
    d = os.path.join(adapters_dir, "seed")
    with open(os.path.join(d, "adapter_config.json")) as f:
        config = json.load(f)
    return read_safetensors_shapes(os.path.join(d, "adapter_model.safetensors")), config


# ---- The checks ----

def infer_request(oip, model, prompt, raw=False, **params):
    req = oip.ModelInferRequest(model_name=model, id="req-1")
    t = req.inputs.add(name="text_input", datatype="BYTES", shape=[1])
    data = prompt.encode()
    if raw:
        req.raw_input_contents.append(struct.pack("<I", len(data)) + data)
    else:
        t.contents.bytes_contents.append(data)
    for k, v in params.items():
        p = req.parameters[k]
        if isinstance(v, bool):
            p.bool_param = v
        elif isinstance(v, int):
            p.int64_param = v
        elif isinstance(v, float):
            p.double_param = v
        else:
            p.string_param = v
    return req


def infer_text(stub, oip, model, prompt, raw=False, **params):
    """Returns the text (decoded as strict UTF-8, which the server promises), the reply and its
    parameters."""
    r = stub.unary(OIP + "ModelInfer", infer_request(oip, model, prompt, raw, **params),
                   oip.ModelInferResponse)
    if r.raw_output_contents:
        blob = r.raw_output_contents[0]
        text = blob[4:4 + struct.unpack("<I", blob[:4])[0]].decode("utf-8")
    else:
        text = r.outputs[0].contents.bytes_contents[0].decode("utf-8")
    params = {k: v.WhichOneof("parameter_choice") and getattr(v, v.WhichOneof("parameter_choice"))
              for k, v in r.parameters.items()}
    return text, r, params


def check_plugin_host(args, work, health, oip, pb, shapes, config):
    """The plugin loaded by a host that has a method of its own, keeping one adapter on the
    device among three."""
    host_adapters = os.path.join(work, "host-adapters")
    for i in range(3):
        write_adapter(os.path.join(host_adapters, "a%d" % i), shapes, config, seed=20 + i)
    cfg = json.dumps({"model": args.model, "adapters": host_adapters,
                      "max_resident_adapters": 1})
    bad = subprocess.run([args.host, args.plugin, json.dumps({"model": args.model, "bogus": 1})],
                         capture_output=True, text=True, timeout=120)
    check(bad.returncode == 1 and "unknown key \"bogus\"" in bad.stderr,
          "plugin rejects an unknown configuration key: %s" % bad.stderr.strip())
    host = Server(None, None, None, os.path.join(work, "host.log"),
                  command=[args.host, args.plugin, cfg])
    try:
        ch = grpc.insecure_channel(host.address)
        check(ch.unary_unary("/asu.test.EchoHost/Echo")(b"ping", timeout=30) == b"ping",
              "the host's own method answers on the shared port")
        stub = Stub(ch)
        r = stub.unary(HEALTH + "Check", health.HealthCheckRequest(service="asu.v1.Asu"),
                       health.HealthCheckResponse)
        check(r.status == health.HealthCheckResponse.SERVING, "plugin health SERVING in the host")
        r = stub.unary(OIP + "ServerLive", oip.ServerLiveRequest(), oip.ServerLiveResponse)
        check(r.live, "plugin answers ServerLive in the host")
        check_residency(stub, oip, pb)
        ch.close()
    finally:
        status = host.stop()
    check(status == 0, "the host stops cleanly on SIGTERM (status %s)" % status)


def check_residency(stub, oip, pb):
    """With room for one adapter on the device, using three in turn moves them between host
    memory and the device without changing what they generate."""
    first = {}
    for rounds in range(2):
        for name in ("a0", "a1", "a2"):
            text, _, _ = infer_text(stub, oip, name, "Once upon a time", max_tokens=12)
            first.setdefault(name, text)
            check(text == first[name], "adapter %s generates the same text after moving (%r)"
                  % (name, text))
            listed = stub.unary(ASU + "ListAdapters", pb.ListAdaptersRequest(),
                                pb.ListAdaptersResponse).adapters
            resident = [a.name for a in listed if a.resident]
            check(resident == [name], "only the adapter last used is on the device: %s" % resident)
    check(len(set(first.values())) == 3, "the three adapters generate different texts")


def check_metadata(stub, oip, health, model):
    r = stub.unary(OIP + "ServerMetadata", oip.ServerMetadataRequest(),
                   oip.ServerMetadataResponse)
    check(r.name == "asu" and "model_repository" in r.extensions, "ServerMetadata %s" % r)
    r = stub.unary(OIP + "ServerReady", oip.ServerReadyRequest(), oip.ServerReadyResponse)
    check(r.ready, "ServerReady")
    r = stub.unary(OIP + "ModelMetadata", oip.ModelMetadataRequest(name=model),
                   oip.ModelMetadataResponse)
    check(r.inputs[0].name == "text_input" and r.inputs[0].datatype == "BYTES"
          and r.outputs[0].name == "text_output" and list(r.versions) == ["1"],
          "ModelMetadata of the base model")
    r = stub.unary(OIP + "ModelReady", oip.ModelReadyRequest(name=model), oip.ModelReadyResponse)
    check(r.ready, "ModelReady of the base model")
    expect_code(lambda: stub.unary(OIP + "ModelReady", oip.ModelReadyRequest(name="nosuch"),
                                   oip.ModelReadyResponse),
                grpc.StatusCode.NOT_FOUND, "ModelReady of an unknown model", "nosuch")
    expect_code(lambda: stub.unary(HEALTH + "Check", health.HealthCheckRequest(service="x.Y"),
                                   health.HealthCheckResponse),
                grpc.StatusCode.NOT_FOUND, "health Check of an unknown service", "x.Y")
    watch = stub.channel.unary_stream(
        HEALTH + "Watch", request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=health.HealthCheckResponse.FromString)(
            health.HealthCheckRequest(), timeout=30)
    first = next(watch)
    watch.cancel()
    check(first.status == health.HealthCheckResponse.SERVING, "health Watch starts SERVING")
    expect_code(lambda: stub.raw("/no.Such/Method", b""), grpc.StatusCode.UNIMPLEMENTED,
                "an unknown method", "/no.Such/Method")


def check_infer(stub, oip, pb, model):
    text, r, params = infer_text(stub, oip, model, "Once upon a time", max_tokens=24)
    greedy = "".join(m.text for m in stub.channel.unary_stream(
        ASU + "Generate", request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=pb.GenerateResponse.FromString)(
            pb.GenerateRequest(prompt="Once upon a time", max_tokens=24, adapter="none"),
            timeout=120))
    check(text and text == greedy, "ModelInfer greedy text equals Generate's: %r" % text)
    expect_code(lambda: infer_text(stub, oip, model, "x", max_tokens=-5),
                grpc.StatusCode.INVALID_ARGUMENT, "ModelInfer with max_tokens -5", ">= 0, got -5")
    check(r.id == "req-1" and r.model_name == model and r.model_version == "1"
          and params.get("completion_tokens") == 24, "ModelInfer response fields %s" % params)
    raw_text, r, _ = infer_text(stub, oip, model, "Once upon a time", raw=True, max_tokens=24)
    check(raw_text == text and r.raw_output_contents, "raw input gets raw output, same text")
    sampled = {infer_text(stub, oip, model, "Once", max_tokens=16, temperature=1.0, seed=s)[0]
               for s in (1, 2, 3)}
    check(len(sampled) > 1, "sampling with different seeds varies (%d texts)" % len(sampled))
    bad = [
        (dict(max_tokens=10 ** 9), grpc.StatusCode.RESOURCE_EXHAUSTED, "max_tokens"),
        (dict(temperature="hot"), grpc.StatusCode.INVALID_ARGUMENT, "temperature"),
        (dict(colour=1), grpc.StatusCode.INVALID_ARGUMENT, "colour"),
        (dict(adapter="nosuch"), grpc.StatusCode.NOT_FOUND, "nosuch"),
    ]
    for params, code, needle in bad:
        expect_code(lambda: infer_text(stub, oip, model, "x", **params), code,
                    "ModelInfer with %s" % params, needle)
    expect_code(lambda: infer_text(stub, oip, model, "x" * 20000), grpc.StatusCode.RESOURCE_EXHAUSTED,
                "ModelInfer with a prompt over the limit", "prompt")
    req = infer_request(oip, model, "x")
    req.inputs[0].name = "image"
    expect_code(lambda: stub.unary(OIP + "ModelInfer", req, oip.ModelInferResponse),
                grpc.StatusCode.INVALID_ARGUMENT, "ModelInfer with a wrong input", "text_input")
    req = infer_request(oip, model, "x", raw=True)
    req.raw_input_contents[0] = b"\x09\x00\x00\x00ab"
    expect_code(lambda: stub.unary(OIP + "ModelInfer", req, oip.ModelInferResponse),
                grpc.StatusCode.INVALID_ARGUMENT, "ModelInfer with a bad raw length", "raw")
    return text


def repo_load(stub, oip, name, path=None, md=None):
    req = oip.RepositoryModelLoadRequest(model_name=name)
    if path is not None:
        req.parameters["path"].string_param = path
    return stub.unary(OIP + "RepositoryModelLoad", req, oip.RepositoryModelLoadResponse, md=md)


def index(stub, oip):
    r = stub.unary(OIP + "RepositoryIndex", oip.RepositoryIndexRequest(),
                   oip.RepositoryIndexResponse)
    return {m.name: (m.version, m.state) for m in r.models}


def check_repository(stub, oip, model, root, shapes, config, base_text):
    write_adapter(os.path.join(root, "ext"), shapes, config, seed=7)
    no_token = Stub(stub.channel)
    expect_code(lambda: repo_load(no_token, oip, "ext", "ext"), grpc.StatusCode.UNAUTHENTICATED,
                "RepositoryModelLoad without a token", "authorization")
    wrong = [("authorization", "Bearer " + TOKEN[:-1] + "X")]
    expect_code(lambda: repo_load(stub, oip, "ext", "ext", md=wrong),
                grpc.StatusCode.UNAUTHENTICATED, "RepositoryModelLoad with a wrong token",
                "does not match")
    expect_code(lambda: repo_load(stub, oip, model, "ext"), grpc.StatusCode.INVALID_ARGUMENT,
                "an import under the base model's name", "base model")
    expect_code(lambda: repo_load(stub, oip, "ext", "../outside"),
                grpc.StatusCode.PERMISSION_DENIED, "a path with '..'", "..")
    outside = tempfile.mkdtemp(prefix="asu-outside.")
    write_adapter(outside, shapes, config, seed=1)
    os.symlink(outside, os.path.join(root, "link"))
    expect_code(lambda: repo_load(stub, oip, "ext", "link"), grpc.StatusCode.PERMISSION_DENIED,
                "a symbolic link out of the data root", "outside the data root")
    expect_code(lambda: repo_load(stub, oip, "ext", outside), grpc.StatusCode.PERMISSION_DENIED,
                "an absolute path out of the data root", "outside the data root")
    shutil.rmtree(outside)
    expect_code(lambda: repo_load(stub, oip, "ext", "missing"), grpc.StatusCode.NOT_FOUND,
                "a missing adapter directory", "missing")

    name0 = sorted(shapes)[0]
    broken = dict(shapes)
    broken[name0] = [shapes[name0][0] + 1, shapes[name0][1]]
    write_adapter(os.path.join(root, "badshape"), broken, config, seed=2)
    expect_code(lambda: repo_load(stub, oip, "bad", "badshape"), grpc.StatusCode.INVALID_ARGUMENT,
                "a tensor of the wrong shape", name0)
    missing = {k: v for k, v in shapes.items() if k != name0}
    write_adapter(os.path.join(root, "badmissing"), missing, config, seed=2)
    expect_code(lambda: repo_load(stub, oip, "bad", "badmissing"), grpc.StatusCode.INVALID_ARGUMENT,
                "a missing tensor", name0)
    write_adapter(os.path.join(root, "baddtype"), shapes, config, seed=2, dtype_of=name0)
    expect_code(lambda: repo_load(stub, oip, "bad", "baddtype"), grpc.StatusCode.INVALID_ARGUMENT,
                "a tensor of the wrong dtype", "adapter_model.safetensors")
    write_adapter(os.path.join(root, "badtrunc"), shapes, config, seed=2)
    f = os.path.join(root, "badtrunc", "adapter_model.safetensors")
    os.truncate(f, os.path.getsize(f) // 2)
    expect_code(lambda: repo_load(stub, oip, "bad", "badtrunc"), grpc.StatusCode.INVALID_ARGUMENT,
                "a truncated safetensors file", "adapter_model.safetensors")
    check("bad" not in index(stub, oip), "no rejected import is listed")

    repo_load(stub, oip, "ext", "ext")
    check(index(stub, oip).get("ext") == ("1", "READY"), "imported adapter listed READY at 1")
    ext_text, r, params = infer_text(stub, oip, "ext", "Once upon a time", max_tokens=24)
    check(ext_text != base_text and params.get("adapter") == "ext" and r.model_version == "1",
          "the imported adapter changes the output: %r" % ext_text)
    via_param, _, _ = infer_text(stub, oip, model, "Once upon a time", max_tokens=24,
                                 adapter="ext")
    check(via_param == ext_text, "adapter as a parameter gives the same text")

    write_adapter(os.path.join(root, "ext2"), shapes, config, seed=8)
    repo_load(stub, oip, "ext", "ext2")
    check(index(stub, oip).get("ext") == ("2", "READY"), "a second import makes version 2")
    req = infer_request(oip, "ext", "x", max_tokens=2)
    req.model_version = "1"
    expect_code(lambda: stub.unary(OIP + "ModelInfer", req, oip.ModelInferResponse),
                grpc.StatusCode.NOT_FOUND, "an old version is not served", "version 1")
    for method, req_type, resp_type in (("ModelMetadata", oip.ModelMetadataRequest,
                                         oip.ModelMetadataResponse),
                                        ("ModelReady", oip.ModelReadyRequest,
                                         oip.ModelReadyResponse)):
        expect_code(lambda: stub.unary(OIP + method, req_type(name="ext", version="7"),
                                       resp_type),
                    grpc.StatusCode.NOT_FOUND, method + " of a version not served", "version 7")

    stub.unary(OIP + "RepositoryModelUnload", oip.RepositoryModelUnloadRequest(model_name="ext"),
               oip.RepositoryModelUnloadResponse)
    check(index(stub, oip).get("ext") == ("", "UNAVAILABLE"), "unloaded adapter UNAVAILABLE")
    expect_code(lambda: infer_text(stub, oip, "ext", "x", max_tokens=2),
                grpc.StatusCode.NOT_FOUND, "ModelInfer on an unloaded adapter", "ext")
    repo_load(stub, oip, "ext")
    check(index(stub, oip).get("ext") == ("2", "READY"), "reloaded from the adapters directory")
    expect_code(lambda: stub.unary(OIP + "RepositoryModelUnload",
                                   oip.RepositoryModelUnloadRequest(model_name=model),
                                   oip.RepositoryModelUnloadResponse),
                grpc.StatusCode.FAILED_PRECONDITION, "unloading the base model", model)


def check_malformed(stub, oip, address):
    """Bytes that are no valid message, sent to every method of every service."""
    methods = [ASU + m for m in ("Generate", "StartUnlearning", "WatchJob", "GetJob", "CancelJob",
                                 "ListAdapters", "ActivateAdapter", "DeactivateAdapter")]
    methods += [OIP + m for m in ("ServerLive", "ServerReady", "ServerMetadata", "ModelReady",
                                  "ModelMetadata", "ModelInfer", "RepositoryIndex",
                                  "RepositoryModelLoad", "RepositoryModelUnload")]
    methods += [HEALTH + "Check", HEALTH + "Watch"]
    bad = b"\xff\xff\xff\x07"
    wrong_type = b"\x08\x01"  # field 1 as a varint, where most requests have a string
    for m in methods:
        if m.endswith(("Generate", "WatchJob", "Watch")):
            def send(data, m=m):
                return list(stub.channel.unary_stream(m)(data, timeout=30, metadata=stub.md))
        else:
            def send(data, m=m):
                return stub.channel.unary_unary(m)(data, timeout=30, metadata=stub.md)
        expect_code(lambda: send(bad), grpc.StatusCode.INVALID_ARGUMENT,
                    "malformed bytes to " + m, "not a valid")
        try:
            send(wrong_type)
            code = grpc.StatusCode.OK
        except grpc.RpcError as e:
            code = e.code()
        check(code in (grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT,
                       grpc.StatusCode.NOT_FOUND),
              "a field of the wrong type to %s -> %s" % (m, code.name))
    big = grpc.insecure_channel(address,
                                options=[("grpc.max_send_message_length", 80 << 20)])
    expect_code(lambda: big.unary_unary(OIP + "ModelInfer")(b"\x0a" + b"\x00" * (65 << 20),
                                                            timeout=60),
                grpc.StatusCode.RESOURCE_EXHAUSTED, "a 65 MiB message", "larger than max")
    big.close()
    r = stub.unary(OIP + "ServerLive", oip.ServerLiveRequest(), oip.ServerLiveResponse)
    check(r.live, "the server still serves after the bad messages")


def run_cli(args, address, *words, token=None, ca=None):
    env = dict(os.environ)
    env.pop("ASU_AUTH_TOKEN", None)
    if token:
        env["ASU_AUTH_TOKEN"] = token
    cmd = [args.cli, "--server", address] + (["--tls-ca", ca] if ca else []) + list(words)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)


def check_cli_token(args, address):
    r = run_cli(args, address, "adapters")
    check(r.returncode == 0, "asu adapters needs no token")
    r = run_cli(args, address, "deactivate")
    check(r.returncode == 1 and "UNAUTHENTICATED" in r.stderr,
          "asu deactivate without ASU_AUTH_TOKEN: %s" % r.stderr.strip())
    r = run_cli(args, address, "deactivate", token=TOKEN)
    check(r.returncode == 0, "asu deactivate with ASU_AUTH_TOKEN (%s)" % r.stderr.strip())


def check_tls(args, work, oip):
    key, cert = os.path.join(work, "key.pem"), os.path.join(work, "cert.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", key, "-out", cert], check=True, capture_output=True)
    server = Server(args.server, args.model, os.path.join(work, "tls-adapters"),
                    os.path.join(work, "tls.log"), extra=["--tls-cert", cert, "--tls-key", key])
    try:
        with open(cert, "rb") as f:
            creds = grpc.ssl_channel_credentials(root_certificates=f.read())
        ch = grpc.secure_channel(server.address, creds)
        r = Stub(ch).unary(OIP + "ServerLive", oip.ServerLiveRequest(), oip.ServerLiveResponse)
        check(r.live, "ServerLive over TLS")
        r = run_cli(args, server.address, "adapters", ca=cert)
        check(r.returncode == 0, "asu adapters over TLS (%s)" % r.stderr.strip())
        plain = grpc.insecure_channel(server.address)
        expect_code(lambda: Stub(plain).unary(OIP + "ServerLive", oip.ServerLiveRequest(),
                                              oip.ServerLiveResponse),
                    grpc.StatusCode.UNAVAILABLE, "a plaintext client of the TLS server")
        ch.close()
        plain.close()
    finally:
        server.stop()


def main():
    ap = argparse.ArgumentParser()
    for name in ("server", "cli", "host", "plugin", "model", "proto"):
        ap.add_argument("--" + name, required=True)
    args = ap.parse_args()
    if not shutil.which("protoc") or not shutil.which("openssl"):
        print("protoc or openssl not found (apt-get install protobuf-compiler openssl)")
        return 77
    work = tempfile.mkdtemp(prefix="asu-serving.")
    pb = build_messages(args.proto, work)
    health = compile_flat(args.proto, "grpc/health/v1/health.proto", work, "health_pb2")
    oip = compile_flat(args.proto, "inference/grpc_service.proto", work, "grpc_service_pb2")
    model = os.path.basename(args.model)[:-len(".gguf")]
    root = os.path.join(work, "root")
    os.makedirs(root)
    with open(os.path.join(work, "token"), "w") as f:
        f.write(TOKEN + "\n")
    adapters = os.path.join(work, "adapters")
    server = None
    try:
        server = Server(args.server, args.model, adapters, os.path.join(work, "server.log"),
                        extra=["--data-root", root, "--auth-token-file",
                               os.path.join(work, "token")])
        stub = Stub(grpc.insecure_channel(server.address), TOKEN)
        check_metadata(stub, oip, health, model)
        base_text = check_infer(stub, oip, pb, model)
        shapes, config = train_seed_adapter(stub, pb, adapters)
        check_plugin_host(args, work, health, oip, pb, shapes, config)
        check_repository(stub, oip, model, root, shapes, config, base_text)
        check_malformed(stub, oip, server.address)
        check_cli_token(args, server.address)
        status = server.stop()
        server = None
        check(status == 0, "asu-server stops cleanly (status %s)" % status)
        check_tls(args, work, oip)
    finally:
        if server:
            server.stop()
        clean_up(work)
    return summary("serving")


if __name__ == "__main__":
    sys.exit(main())
