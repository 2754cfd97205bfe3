"""Batch inference memory is bounded by the chunk size, not the file: score a CSV larger than the memory the
process may add to its baseline (RLIMIT_AS), chunked (passes) and in one chunk (fails), and report peak RSS.
Writes bench/results/batch_memory.json. Bounded: one file of ROWS rows, three child processes, each with a timeout."""
import json, os, resource, subprocess, sys, tempfile, time
from pathlib import Path
import numpy as np, pandas as pd

ROWS, FEATURES, HEADROOM_MB = int(os.environ.get("ROWS", 1_200_000)), 30, int(os.environ.get("HEADROOM_MB", 200))
ROOT = Path(__file__).resolve().parent.parent
CHILD = """
import json, resource, sys, time
from prodkit.serving.batch import batch_infer, open_model
t0 = time.perf_counter()
s = batch_infer(open_model(sys.argv[1]), sys.argv[2], sys.argv[3], chunk_size=int(sys.argv[4]), progress=False)
print(json.dumps(dict(rows=s["rows"], rows_per_s=s["rows_per_s"], peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)))
"""

def vm_peak_mb(pid_status: str) -> float:
    return next(int(l.split()[1]) for l in pid_status.splitlines() if l.startswith("VmPeak")) / 1024

def child(args, limit_mb=None, timeout=600):
    def limit():
        if limit_mb: resource.setrlimit(resource.RLIMIT_AS, (int(limit_mb * 2**20),) * 2)
    code = CHILD + "\nprint('VM', open('/proc/self/status').read().split('VmPeak:')[1].split()[0])"
    r = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, preexec_fn=limit, timeout=timeout, cwd=ROOT,
                       env={**os.environ, "MALLOC_ARENA_MAX": "2"})   # glibc reserves 64 MB of address space per thread arena otherwise
    if r.returncode: return dict(ok=False, error=(r.stderr.strip().splitlines() or ["?"])[-1][:200])
    lines = r.stdout.strip().splitlines()
    return dict(ok=True, **json.loads(lines[-2]), vm_peak_mb=int(lines[-1].split()[1]) / 1024)

def main():
    from prodkit.research.split import InputSpec
    from prodkit.research.model import build_model
    from prodkit.core.schema import ExportConfig
    from prodkit.release.onnx import export_onnx, onnx_metadata
    d = Path(tempfile.mkdtemp(prefix="prodkit-bench-"))
    feats = [f"f{i}" for i in range(FEATURES)]
    m = build_model(dict(name="mlp", hidden=[64, 32], dropout=0.0), InputSpec(feats, "target", 2, [FEATURES], [0.0] * FEATURES, [1.0] * FEATURES))
    (d/"model.onnx").write_bytes(export_onnx(m, ExportConfig(dynamo=False), onnx_metadata(m, {"columns": {f: {"min": -5, "max": 5} for f in feats}}))[0])
    rng = np.random.default_rng(0)
    pd.DataFrame(rng.normal(size=(2000, FEATURES)).round(6), columns=feats).to_csv(d/"small.csv", index=False)
    t0 = time.perf_counter()
    with open(d/"big.csv", "w") as f:
        for i in range(0, ROWS, 200_000):
            pd.DataFrame(rng.normal(size=(min(200_000, ROWS - i), FEATURES)).round(6), columns=feats).to_csv(f, index=False, header=i == 0)
    size_mb = (d/"big.csv").stat().st_size / 2**20
    print(f"input: {ROWS:,} rows x {FEATURES} features, {size_mb:.0f} MB CSV (written in {time.perf_counter() - t0:.0f} s)")
    base = child([d/"model.onnx", d/"small.csv", d/"small_out.csv", 65536])
    limit = base["vm_peak_mb"] + HEADROOM_MB
    print(f"baseline (2,000 rows): peak RSS {base['peak_rss_mb']:.0f} MB, VmPeak {base['vm_peak_mb']:.0f} MB; "
          f"limit RLIMIT_AS = VmPeak + {HEADROOM_MB} MB = {limit:.0f} MB (the file is {size_mb:.0f} MB)")
    free = child([d/"model.onnx", d/"big.csv", d/"free_out.parquet", 65536])
    print(f"chunked, no limit: peak RSS {free.get('peak_rss_mb', 0):.0f} MB, VmPeak {free.get('vm_peak_mb', 0):.0f} MB")
    chunked = child([d/"model.onnx", d/"big.csv", d/"big_out.parquet", 65536], limit)
    whole = child([d/"model.onnx", d/"big.csv", d/"whole_out.parquet", ROWS + 1], limit)
    rows = [("chunked (65,536 rows)", chunked), ("one chunk (whole file)", whole)]
    print("\n| run under the limit | result | peak RSS MB | rows/s |\n|---|---|---|---|")
    for name, r in rows:
        print(f"| {name} | {'ok' if r['ok'] else 'failed: ' + r['error'][:60]} | {r.get('peak_rss_mb', float('nan')):.0f} | {r.get('rows_per_s', '-')} |")
    out = dict(rows=ROWS, features=FEATURES, file_mb=size_mb, headroom_mb=HEADROOM_MB, limit_mb=limit, baseline=base, chunked_unlimited=free, chunked=chunked, whole=whole)
    (ROOT/"bench"/"results").mkdir(parents=True, exist_ok=True)
    (ROOT/"bench"/"results"/"batch_memory.json").write_text(json.dumps(out, indent=2))
    for p in d.iterdir(): p.unlink()
    d.rmdir()

if __name__ == "__main__": main()
