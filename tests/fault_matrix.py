"""Re-run prodkit's fault matrix (tests/test_faults.py: real processes, files, signals) and print it as a table.

    .venv/bin/python tests/fault_matrix.py                       # this checkout
    .venv/bin/python tests/fault_matrix.py --code /old/checkout   # another checkout's code, same scenarios (e.g. before a fix)
    .venv/bin/python tests/fault_matrix.py -k sweep               # a subset (pytest -k)

Prints scenario / expected / observed / ok and writes bench/results/fault_matrix.json. Exit 1 if any scenario is not ok.
"""
import argparse, json, os, shutil, subprocess, sys, tempfile, time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXPECTED = {   # test name (before any [param]) -> (scenario, what must hold)
    "test_an_interrupted_sweep_stops_everything_it_started": ("sweep interrupted: {param}", "exit 130, no process left, unfinished points killed naming the signal, sweep.json, no .pkl, no secret"),
    "test_sighup_of_the_runner_marks_the_run_killed": ("SIGHUP to `prodkit run`", "exit 130, run killed, kernel gone"),
    "test_a_full_disk_mid_run_ends_the_record": ("disk full mid-run (8 MiB tmpfs)", "exit 6, run failed: No space left on device"),
    "test_a_job_that_damages_its_own_metrics_file_still_ends_its_record": ("a job writes a metrics.json that is not JSON", "exit 6, run failed, no traceback"),
    "test_a_run_that_never_ended_shows_when_it_started": ("`prodkit show --brief` of a running run, then after kill -9 of its runner", "exit 0, says when it started; then killed, no traceback"),
    "test_the_connection_file_of_a_runner_killed_with_9_is_removed_by_the_next_run": ("runner killed with -9", "kernel exits; next run removes its connection file; listed killed"),
    "test_a_damaged_record_never_blocks_other_runs_listings_or_the_cache": ("run.json: bad bytes, a list, wrong types at the top and inside fields", "runs/show/cache work; one warning per file"),
    "test_a_relative_runs_dir_is_taken_from_the_project_root": ("paths.runs_dir=relruns from another cwd", "runs under <root>/relruns, metrics and artifacts recorded"),
    "test_out_of_range_values_and_escaping_names_are_refused_at_compose_time": ("override {param}", "exit 2 at compose time, no run dir, no traceback"),
    "test_null_cell_timeout_means_no_limit": ("a 2.5 s cell, job.cell_timeout=1 then null", "exit 3 with the limit, exit 0 with null"),
    "test_a_secret_in_a_cell_error_or_a_metric_name_is_scrubbed_everywhere": ("secret in a cell's error and as a metric name", "not on the console, not in any file"),
    "test_training_that_diverges_without_nan_fails": ("train.lr=1e9 (Adam): loss 5e27, no NaN", "exit 1, run failed: training diverged"),
    "test_a_header_only_csv_says_it_has_no_rows": ("a CSV with a header and no rows", "exit 1, one line: the file has no rows"),
    "test_quarantined_rows_are_counted_in_the_record_with_the_file_and_its_hash": ("outliers moved to quarantine", "counts in run.json, quarantine file with sha256"),
    "test_an_offline_train_run_leaves_nothing_in_tmpdir": ("offline wandb train run", "nothing left in TMPDIR"),
}

def _cases(xml: Path) -> list[dict]:
    rows = []
    for tc in ET.parse(xml).getroot().iter("testcase"):
        name = tc.get("name")
        base, _, param = name.partition("[")
        scenario, expected = EXPECTED.get(base, (base, "the test passes"))
        bad = tc.find("failure") if tc.find("failure") is not None else tc.find("error")
        skipped = tc.find("skipped")
        if bad is not None: observed = (bad.get("message") or "failed").splitlines()[0][:110]
        elif skipped is not None: observed = f"skipped: {skipped.get('message', '')[:90]}"
        else: observed = "as expected"
        rows.append(dict(scenario=scenario.format(param=param.rstrip("]")), expected=expected, observed=observed,
                         ok=bad is None and skipped is None, seconds=float(tc.get("time", 0))))
    return rows

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--code", help="a checkout whose prodkit/ (and conf/, nbs/) to test instead of this one")
    ap.add_argument("-k", help="only scenarios matching this pytest expression")
    args = ap.parse_args()
    where, env = ROOT, dict(os.environ)
    if args.code:                      # same scenarios, other code: copy this file's tests next to it
        where = Path(tempfile.mkdtemp(prefix="fault-matrix-"))
        for d in ("prodkit", "conf", "nbs"): shutil.copytree(Path(args.code)/d, where/d)
        shutil.copy2(Path(args.code)/"pyproject.toml", where)
        shutil.copytree(ROOT/"tests", where/"tests")
        env["PYTHONPATH"] = str(where)
    xml = Path(tempfile.mkdtemp())/"faults.xml"
    t0 = time.monotonic()
    subprocess.run([sys.executable, "-m", "pytest", "tests/test_faults.py", "-q", "-p", "no:cacheprovider", f"--junitxml={xml}",
                    *(["-k", args.k] if args.k else [])], cwd=where, env=env, capture_output=True)
    rows = _cases(xml)
    from rich.console import Console
    from rich.table import Table
    t = Table("scenario", "expected", "observed", "ok", title=f"prodkit fault matrix ({args.code or 'this checkout'})")
    for r in rows: t.add_row(r["scenario"], r["expected"], r["observed"], "ok" if r["ok"] else "NO")
    Console(width=200).print(t)
    print(f"{sum(r['ok'] for r in rows)} of {len(rows)} scenarios hold ({time.monotonic() - t0:.0f} s)")
    out = ROOT/"bench"/"results"/"fault_matrix.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(dict(code=str(args.code or ROOT), scenarios=rows), indent=2) + "\n")
    return 0 if rows and all(r["ok"] for r in rows) else 1

if __name__ == "__main__":
    sys.exit(main())
