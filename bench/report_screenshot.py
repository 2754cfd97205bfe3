"""Render a drift report in a real browser (headless Chromium) and save a screenshot.

The check the issue asks for: the HTML report opens offline, in a fresh browser profile with networking
features off, and shows its table and plots. Usage:

    .venv/bin/python bench/report_screenshot.py [REPORT.html] [OUT.png]

Without arguments it makes a report (a synthetic reference, a current sample with three features moved)
and writes bench/results/drift_report.png. Exits 0 with the screenshot, 1 if Chromium failed or the page
has an external reference, 0 with a "skipped" line when no Chromium is installed
(`apt-get install -y chromium`). tests/test_drift_report_browser.py runs it.
"""
import importlib.util, shutil, subprocess, sys, tempfile, time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SKIPPED = 0   # `make bench` runs every script: a missing browser is a skip, not a failure

def chromium() -> str | None:
    "The Chromium (or Chrome) executable, if one is installed"
    return next((p for p in (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome", "chrome")) if p), None)

def make_report(out_dir: Path) -> Path:
    from prodkit.research.data import synthetic_frame
    from prodkit.monitoring.drift import compare, reference_from_frame
    from prodkit.monitoring.drift_report import write_report
    train, cur = synthetic_frame(20000, 8, seed=1), synthetic_frame(5000, 8, seed=2)
    cur[["x0", "x1"]] += 0.6
    cur["segment"] = cur["segment"].where(cur["segment"] != "a", "c")
    cur.loc[cur.index[:600], "x5"] = float("nan")
    cur["prediction"], cur["confidence"] = (cur["x0"] > 0).astype(int), 0.8
    result = compare(reference_from_frame(train, "target"), cur)
    result.reference, result.current = dict(file="synthetic 20,000 rows"), dict(file="synthetic 5,000 rows, x0/x1 +0.6 sigma")
    return write_report(result, out_dir, title="Drift report (screenshot check)")[0]

def screenshot(page: Path, png: Path, browser: str, width: int = 1280, height: int = 1800) -> None:
    "Headless Chromium, no network features, a throw-away profile; raises if no PNG appears"
    with tempfile.TemporaryDirectory(prefix="prodkit-chromium-") as profile:
        cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--hide-scrollbars", f"--user-data-dir={profile}",
               f"--window-size={width},{height}", f"--screenshot={png}", page.resolve().as_uri()]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if not png.is_file() or png.stat().st_size < 1000:
        raise RuntimeError(f"chromium made no screenshot (exit {res.returncode}): {res.stderr[-2000:]}")

def main(argv: list[str]) -> int:
    browser = chromium()
    if browser is None:
        print("skipped: no chromium on PATH (apt-get install -y chromium)"); return SKIPPED
    if importlib.util.find_spec("prodkit.monitoring") is None:      # tests/test_docs.py still uses screenshot()
        print("skipped: no prodkit.monitoring here (a project made with prodkit new --no-serving)"); return SKIPPED
    from prodkit.monitoring.drift_report import external_references
    page = Path(argv[0]) if argv else make_report(Path(tempfile.mkdtemp(prefix="prodkit-report-")))
    png = Path(argv[1]) if len(argv) > 1 else ROOT/"bench"/"results"/"drift_report.png"
    png.parent.mkdir(parents=True, exist_ok=True); png.unlink(missing_ok=True)
    if bad := external_references(page.read_text()):
        print(f"{page} has external references: {bad[:5]}"); return 1
    t0 = time.perf_counter()
    screenshot(page, png, browser)
    print(f"{page} -> {png} ({png.stat().st_size / 1024:.0f} KB, {time.perf_counter() - t0:.1f} s, {browser})")
    return 0

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
