"""Benchmark: the released ONNX model (onnxruntime) next to torch eager on the demo model, one thread each, same run.

Targets (issue 11): ONNX at least 3x faster than torch eager at batch 1 and 1.5x at batch 256, one thread each;
export time (dynamo and TorchScript exporters) and model size in the table. Results go to bench/results/release.json.
The demo model is the latest succeeded `train` run under paths.runs_dir (one is trained first if there is none).
Timings alternate between the two engines in rounds, so a busy neighbour slows both alike; the median is reported.
"""
import json, os, platform, statistics, sys, time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
ROUNDS = int(os.environ.get("BENCH_ROUNDS", 7))
TARGETS = {1: 3.0, 256: 1.5}


def demo_run():
    from prodkit.core.config import compose
    from prodkit.release.release import load_train_run
    from prodkit.jobs.runs import list_runs
    runs_dir = compose().paths.runs_dir
    if not list_runs(runs_dir, "train", "succeeded"):
        from prodkit.jobs.runner import run_job
        print("no succeeded train run: training the demo model first", flush=True)
        run_job("train", progress=False)
    return load_train_run(None, runs_dir)


def per_call_ms(fn, seconds: float) -> float:
    "Median ms per call of `fn` over calls filling about `seconds`"
    n, t0 = 0, time.perf_counter()
    times = []
    while time.perf_counter() - t0 < seconds or n < 20:
        a = time.perf_counter_ns(); fn(); times.append((time.perf_counter_ns() - a) / 1e6); n += 1
    return statistics.median(times)


def main() -> dict:
    from prodkit.core.schema import ExportConfig
    from prodkit.release.onnx import export_onnx, onnx_metadata, ort_session
    trained = demo_run()
    model = trained.model.eval()
    meta = onnx_metadata(model, trained.reference_stats, trained.record.id, trained.split.data_version)
    exports = {}
    for name, s in (("dynamo", ExportConfig()), ("torchscript", ExportConfig(dynamo=False))):
        t0 = time.perf_counter(); data, facts = export_onnx(model, s, meta); exports[name] = dict(seconds=time.perf_counter() - t0, bytes=len(data), data=data)
    torch_bytes = (trained.path/"model.pt").stat().st_size
    torch.set_num_threads(1)
    sess = ort_session(exports["dynamo"]["data"], threads=1)
    x_all = np.resize(trained.split.test[model.inputs.features].to_numpy(np.float32), (256, model.inputs.n_features))
    rows = []
    for b in (1, 256):
        x = np.ascontiguousarray(x_all[:b]); xt = torch.from_numpy(x)
        def run_torch():
            with torch.inference_mode(): torch.softmax(model(xt), 1)
        run_onnx = lambda: sess.run(["probabilities"], {"input": x})
        for _ in range(200): run_torch(); run_onnx()          # warm-up both
        t_torch, t_onnx = [], []
        for _ in range(ROUNDS):                                # alternate: neighbours' load hits both engines alike
            t_torch.append(per_call_ms(run_torch, 0.3)); t_onnx.append(per_call_ms(run_onnx, 0.3))
        tt, to = statistics.median(t_torch), statistics.median(t_onnx)
        rows.append(dict(batch=b, torch_ms=tt, onnx_ms=to, speedup=tt / to, target=TARGETS[b], met=tt / to >= TARGETS[b],
                         torch_rows_per_s=b / tt * 1e3, onnx_rows_per_s=b / to * 1e3))
    return dict(model=f"{trained.cfg.data.name} + {trained.cfg.model.name} (run {trained.record.id})", threads=1,
                torch=torch.__version__, onnxruntime=__import__("onnxruntime").__version__, machine=platform.machine(), cpus=os.cpu_count(),
                rows=rows, export={k: dict(seconds=v["seconds"], bytes=v["bytes"]) for k, v in exports.items()}, torch_file_bytes=torch_bytes)


if __name__ == "__main__":
    res = main()
    print(f"ONNX (onnxruntime) vs torch eager, one thread each: {res['model']}; torch {res['torch']}, onnxruntime {res['onnxruntime']}")
    print(f"{'batch':>5}  {'torch ms':>9}  {'onnx ms':>9}  {'speedup':>7}  {'target':>6}  {'torch rows/s':>12}  {'onnx rows/s':>12}")
    for r in res["rows"]:
        print(f"{r['batch']:>5}  {r['torch_ms']:>9.4f}  {r['onnx_ms']:>9.4f}  {r['speedup']:>6.2f}x  {r['target']:>5.1f}x  "
              f"{r['torch_rows_per_s']:>12,.0f}  {r['onnx_rows_per_s']:>12,.0f}  {'ok' if r['met'] else 'MISSED'}")
    for k, v in res["export"].items(): print(f"export {k:<11} {v['seconds']:6.2f} s  {v['bytes']:>9,} bytes ({v['bytes'] / 2**20:.3f} MB)")
    print(f"torch model.pt {res['torch_file_bytes']:>17,} bytes")
    out = ROOT/"bench"/"results"/"release.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"-> {out}")
    sys.exit(0 if all(r["met"] for r in res["rows"]) else 1)
