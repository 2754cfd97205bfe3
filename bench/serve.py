"""Load test of the online service on loopback: p50/p99 latency and requests/s at 1, 8 and 64 concurrent clients,
for `/predict` and the v2 infer route of `prodkit serve`, next to a bare Starlette app calling onnxruntime directly
on the same model, in the same run, and `/predict` of a second `prodkit serve` that logs every request (serve.log.sample=1: the prediction log's worst case). Bounded: each (route, clients) point stops after REQUESTS requests or SECONDS
seconds, split into ROUNDS rounds that alternate between the targets. Writes bench/results/serve.json. The load generator shares the machine's cores with the servers."""
import asyncio, importlib.util, json, os, signal, socket, subprocess, sys, tempfile, time
from pathlib import Path
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
REQUESTS, SECONDS, CLIENTS = int(os.environ.get("REQUESTS", 3000)), float(os.environ.get("SECONDS", 6)), (1, 8, 64)
FEATURES = 30
BARE = """
import json, sys
import numpy as np, onnxruntime as ort, uvicorn
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route
so = ort.SessionOptions(); so.intra_op_num_threads = so.inter_op_num_threads = 1
sess = ort.InferenceSession(sys.argv[1], so, providers=["CPUExecutionProvider"])
async def predict(request):
    rec = json.loads(await request.body())
    x = np.asarray([list(rec.values())], dtype=np.float32)
    p = sess.run(["probabilities"], {"input": x})[0]
    return JSONResponse({"probabilities": p.tolist()})
uvicorn.run(Starlette(routes=[Route("/predict", predict, methods=["POST"])]), host="127.0.0.1", port=int(sys.argv[2]), log_level="warning", access_log=False)
"""

def server_cpu(proc) -> float:
    "CPU seconds (user + system) a server process has used: per request, a measure the shared machine's load hardly moves"
    t = [int(x) for x in open(f"/proc/{proc.pid}/stat").read().rsplit(")", 1)[1].split()[11:13]]
    return sum(t) / os.sysconf("SC_CLK_TCK")

def free_port():
    with socket.socket() as s: s.bind(("127.0.0.1", 0)); return s.getsockname()[1]

def wait(port, timeout=60):
    t0 = time.time()
    while time.time() - t0 < timeout:
        try: socket.create_connection(("127.0.0.1", port), 0.5).close(); return
        except OSError: time.sleep(0.1)
    raise TimeoutError(port)

async def one_client(port, request: bytes, deadline, budget, lat):
    r, w = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.perf_counter() < deadline and budget[0] > 0:
            budget[0] -= 1
            t0 = time.perf_counter()
            w.write(request); await w.drain()
            head = await r.readuntil(b"\r\n\r\n")
            n = int(next(l.split(b":")[1] for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")))
            await r.readexactly(n)
            if not head.startswith(b"HTTP/1.1 200"): raise RuntimeError(head[:200])
            lat.append(time.perf_counter() - t0)
    finally: w.close()

ROUNDS = int(os.environ.get("ROUNDS", 3))   # targets alternate round by round, so a busy moment of the shared machine hits all of them

async def round_(port, path, body: bytes, clients, requests, seconds, lat):
    req = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body
    await asyncio.gather(*[one_client(port, req, time.perf_counter() + 5, [20], []) for _ in range(min(clients, 8))])   # warm-up
    t0, budget = time.perf_counter(), [requests]
    await asyncio.gather(*[one_client(port, req, t0 + seconds, budget, lat) for _ in range(clients)])
    return time.perf_counter() - t0

def summary(lat, secs):
    a = np.array(lat) * 1000
    return dict(requests=len(a), seconds=round(secs, 2), rps=round(len(a) / secs, 1), p50_ms=round(float(np.percentile(a, 50)), 2), p99_ms=round(float(np.percentile(a, 99)), 2))

def main():
    sys.path.insert(0, str(ROOT/"tests"))
    from prodkit.research.split import InputSpec
    from prodkit.research.model import build_model
    from prodkit.core.schema import ExportConfig
    from prodkit.release.onnx import export_onnx, onnx_metadata
    from prodkit.release.registry import ModelRegistry
    d = Path(tempfile.mkdtemp(prefix="prodkit-bench-serve-"))
    feats = [f"f{i}" for i in range(FEATURES)]
    m = build_model(dict(name="mlp", hidden=[64, 32], dropout=0.0), InputSpec(feats, "target", 2, [FEATURES], [0.0] * FEATURES, [1.0] * FEATURES))
    data = export_onnx(m, ExportConfig(dynamo=False), onnx_metadata(m, {"columns": {f: {"min": -5, "max": 5} for f in feats}}))[0]
    (d/"model.onnx").write_bytes(data)
    reg = ModelRegistry(d/"registry"); reg.register(data); reg.promote(1)
    ours, bare, logged = free_port(), free_port(), free_port()
    env = {**os.environ, "MALLOC_ARENA_MAX": "2"}
    procs = [subprocess.Popen([str(Path(sys.executable).parent/"prodkit"), "serve", "--port", str(ours),
                               f"serve.registry={reg.path}", "serve.poll_seconds=5"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
             subprocess.Popen([sys.executable, "-c", BARE, str(d/"model.onnx"), str(bare)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
             subprocess.Popen([str(Path(sys.executable).parent/"prodkit"), "serve", "--port", str(logged), f"serve.registry={reg.path}", "serve.poll_seconds=5",
                               "serve.log.enabled=true", f"serve.log.dir={d/'prediction_log'}", "serve.log.sample=1.0"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    proc_of = {ours: procs[0], bare: procs[1], logged: procs[2]}
    try:
        wait(ours); wait(bare); wait(logged); time.sleep(1)
        rec = dict(zip(feats, np.random.default_rng(0).normal(size=FEATURES).round(4).tolist()))
        v2 = {"inputs": [{"name": "input", "shape": [1, FEATURES], "datatype": "FP32", "data": list(rec.values())}]}
        targets = [("bare Starlette + ORT", bare, "/predict", rec), ("prodkit /predict", ours, "/predict", rec),
                   ("prodkit v2 infer", ours, "/v2/models/prodkit/infer", v2), ("prodkit /predict, log all", logged, "/predict", rec)]
        results = []
        for clients in CLIENTS:
            lat, secs, cpu = {t[0]: [] for t in targets}, {t[0]: 0.0 for t in targets}, {t[0]: 0.0 for t in targets}
            for _ in range(ROUNDS):
                for name, port, path, body in targets:
                    c0 = server_cpu(proc_of[port])
                    secs[name] += asyncio.run(round_(port, path, json.dumps(body).encode(), clients, REQUESTS // ROUNDS, SECONDS / ROUNDS, lat[name]))
                    cpu[name] += server_cpu(proc_of[port]) - c0
            for name, *_ in targets:
                r = {**summary(lat[name], secs[name]), "server_cpu_us_per_request": round(cpu[name] / max(len(lat[name]), 1) * 1e6)}
                results.append(dict(target=name, clients=clients, **r)); print(f"{name:22s} {clients:3d} clients: {r}", flush=True)
    finally:
        for p in procs: p.send_signal(signal.SIGTERM)
        for p in procs:
            try: p.wait(15)
            except subprocess.TimeoutExpired: p.kill()
    bare_rps = {r["clients"]: r["rps"] for r in results if r["target"].startswith("bare")}
    bare_cpu = {r["clients"]: r["server_cpu_us_per_request"] for r in results if r["target"].startswith("bare")}
    for r in results: r["x_bare_rps"] = round(r["rps"] / bare_rps[r["clients"]], 2); r["x_bare_cpu"] = round(bare_cpu[r["clients"]] / max(r["server_cpu_us_per_request"], 1), 2)
    loop = dict(uvloop=importlib.util.find_spec("uvloop") is not None, httptools=importlib.util.find_spec("httptools") is not None)
    print(f"\nuvicorn loop/parser: {'uvloop' if loop['uvloop'] else 'asyncio'} + {'httptools' if loop['httptools'] else 'h11'}; 1 worker each; "
          f"{os.cpu_count()} cores shared with the load generator; up to {REQUESTS} requests or {SECONDS} s per point, in {ROUNDS} alternating rounds")
    print("\n| target | clients | requests/s | p50 ms | p99 ms | x bare requests/s | server CPU us/request | x bare (CPU) |\n|---|---|---|---|---|---|---|---|")
    for r in results: print(f"| {r['target']} | {r['clients']} | {r['rps']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['x_bare_rps']:.2f} | {r['server_cpu_us_per_request']} | {r['x_bare_cpu']:.2f} |")
    (ROOT/"bench"/"results").mkdir(parents=True, exist_ok=True)
    (ROOT/"bench"/"results"/"serve.json").write_text(json.dumps(dict(loop=loop, cores=os.cpu_count(), requests=REQUESTS, seconds=SECONDS, results=results), indent=2))

if __name__ == "__main__": main()
