import importlib.util, os, shutil, signal, subprocess, sys
from pathlib import Path
import psutil
import pytest

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable

def run(*args, cwd=ROOT, env=None, check=False, timeout=600):
    "Run a command, capture text output; env entries are added to the current environment"
    res = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                         env={**os.environ, **(env or {})})
    if check and res.returncode: raise AssertionError(f"{args} exited {res.returncode}\n{res.stdout}\n{res.stderr}")
    return res

def pytest_collection_modifyitems(config, items):
    "A project made with `prodkit new --no-serving` has no serving package: its `serving` tests are deselected, not failed"
    if importlib.util.find_spec("prodkit.serving") is not None: return
    gone = [i for i in items if i.get_closest_marker("serving")]
    if gone:
        config.hook.pytest_deselected(items=gone)
        items[:] = [i for i in items if not i.get_closest_marker("serving")]

@pytest.fixture
def project_copy(tmp_path):
    "A copy of the project (conf, nbs, package, pyproject) to break without touching the checkout"
    dst = tmp_path/"project"
    dst.mkdir()
    shutil.copy2(ROOT/"pyproject.toml", dst)
    for d in ("conf", "nbs", "prodkit"):
        shutil.copytree(ROOT/d, dst/d, ignore=shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints"))
    return dst

def tagged_processes(tag: str) -> list[str]:
    "Live processes whose environment carries PRODKIT_TEST_TAG=<tag> (children of a job inherit it)"
    found = []
    for proc in psutil.process_iter(["pid", "name"]):
        try:
            if f"PRODKIT_TEST_TAG={tag}".encode() in Path(f"/proc/{proc.pid}/environ").read_bytes(): found.append(f"{proc.pid} {proc.info['name']}")
        except (OSError, psutil.Error): pass
    return found


def interruptible() -> None:
    "`preexec_fn` of a child a test interrupts: SIGINT as a terminal delivers it, however pytest was started (a background shell starts children with SIGINT ignored, and they inherit that)"
    signal.signal(signal.SIGINT, signal.SIG_DFL)
