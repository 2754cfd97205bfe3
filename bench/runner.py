"""Benchmark: per-run overhead of `prodkit run` next to the papermill CLI and plain python, and sweep throughput.

Targets (issue 3): prodkit's single-run wall time below the papermill CLI's; an 8-job sweep at least 1.8x
faster than the same 8 jobs run one after another. Results go to bench/results/runner.json.
"""
import json, os, shutil, statistics, subprocess, sys, tempfile, time
from pathlib import Path
import nbformat

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
REPEATS = int(os.environ.get("BENCH_REPEATS", 5))
WORK = "total = sum(i * i for i in range(200_000))"

def wall(cmd, **kw) -> float:
    t0 = time.perf_counter()
    subprocess.run([str(c) for c in cmd], check=True, capture_output=True, **kw)
    return time.perf_counter() - t0

def median_wall(cmd, n=REPEATS, **kw) -> float:
    wall(cmd, **kw)                       # warm the file cache once
    return statistics.median(wall(cmd, **kw) for _ in range(n))

def main() -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="prodkit-bench-"))
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("cfg = {'job': {'params': {'n': 0}}}", metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell(WORK)]
    nb.metadata["kernelspec"] = {"name": "prodkit", "display_name": "Python (prodkit)", "language": "python"}
    nbformat.write(nb, tmp/"job.ipynb")
    (tmp/"job.py").write_text(WORK + "\n")
    runs = tmp/"runs"
    single = {
        "python script.py": median_wall([sys.executable, tmp/"job.py"]),
        "papermill CLI": median_wall([BIN/"papermill", "-k", "prodkit", "--no-progress-bar", tmp/"job.ipynb", tmp/"out.ipynb"]),
        "prodkit run": median_wall([BIN/"prodkit", "run", "-q", "--force", tmp/"job.ipynb", f"paths.runs_dir={runs}"]),
    }
    n_jobs = 8
    seq = wall(["bash", "-c", " && ".join(f"{BIN/'prodkit'} run -q {tmp/'job.ipynb'} paths.runs_dir={runs}/seq +job.params.n={i}"
                                          for i in range(n_jobs))])
    grid = "+job.params.n=" + ",".join(map(str, range(n_jobs)))
    basic = wall([BIN/"prodkit", "run", "-m", tmp/"job.ipynb", f"paths.runs_dir={runs}/basic", grid, "hydra/launcher=basic"])
    par = wall([BIN/"prodkit", "run", "-m", tmp/"job.ipynb", f"paths.runs_dir={runs}/sweep", grid])
    shutil.rmtree(tmp, ignore_errors=True)
    res = dict(single_run_s=single, sweep=dict(jobs=n_jobs, sequential_s=seq, one_process_s=basic, sweep_s=par, speedup=seq / par,
                                                  speedup_vs_one_process=basic / par),
               ratios={"prodkit / papermill CLI": single["prodkit run"] / single["papermill CLI"],
                       "prodkit / python script": single["prodkit run"] / single["python script.py"]},
               targets={"prodkit below papermill CLI": single["prodkit run"] < single["papermill CLI"],
                        "sweep speedup >= 1.8": seq / par >= 1.8},
               machine=dict(cores=os.cpu_count(), python=sys.version.split()[0]), repeats=REPEATS)
    out = ROOT/"bench"/"results"/"runner.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    return res

def show(res: dict) -> None:
    from rich.console import Console
    from rich.table import Table
    t = Table("single run (median of %d)" % res["repeats"], "wall s", "vs prodkit", title="prodkit run overhead")
    p = res["single_run_s"]["prodkit run"]
    for k, v in res["single_run_s"].items(): t.add_row(k, f"{v:.2f}", f"{v / p:.2f}x")
    s = res["sweep"]
    t2 = Table("8 jobs", "wall s", "speedup", title="sweep throughput")
    t2.add_row("one after another (prodkit run x8)", f"{s['sequential_s']:.2f}", "1.00x")
    t2.add_row("prodkit run -m hydra/launcher=basic (one process)", f"{s['one_process_s']:.2f}", f"{s['sequential_s'] / s['one_process_s']:.2f}x")
    t2.add_row("prodkit run -m (joblib, 1 kernel/core)", f"{s['sweep_s']:.2f}", f"{s['speedup']:.2f}x")
    c = Console()
    c.print(t, t2)
    for name, ok in res["targets"].items(): c.print(f"{'PASS' if ok else 'FAIL'}  {name}")

if __name__ == "__main__":
    show(main())
