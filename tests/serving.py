"Helpers for the serving tests: real prodkit models in a real registry, real servers on free loopback ports"
import contextlib, signal, socket, subprocess, sys, threading, time
from pathlib import Path

import httpx
from prodkit.release.onnx import tiny_onnx   # the tests' one tiny model: a real prodkit export (re-exported here)

ROOT = Path(__file__).resolve().parent.parent
FEATURES = [f"f{i}" for i in range(4)]
RECORD = {"f0": 0.1, "f1": 1.0, "f2": -0.5, "f3": 2.0}

def make_registry(path: Path, n_versions: int = 2, promote: tuple = (1, 2), model: str | None = None):
    "A real registry with `n_versions` versions of `model` (default: the default config's `registry.model`); `promote` promoted in order"
    from prodkit.core.config import compose
    from prodkit.release.registry import ModelRegistry
    reg = ModelRegistry(path, model or compose().registry.model)
    for i in range(n_versions): reg.register(tiny_onnx(seed=i))
    for v in promote: reg.promote(v)
    return reg

def free_port() -> int:
    with socket.socket() as s: s.bind(("127.0.0.1", 0)); return s.getsockname()[1]

def wait_live(url: str, timeout: float = 60, proc=None) -> None:
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc is not None and proc.poll() is not None: raise RuntimeError(f"server exited {proc.returncode}: {proc.stderr.read() if proc.stderr else ''}")
        try:
            if httpx.get(url + "/v2/health/live", timeout=1).status_code == 200: return
        except httpx.TransportError: pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not come up in {timeout} s")

def start_process(overrides: list[str], port: int, log: Path):
    "`prodkit serve` as a child process (by pid); returns (proc, url)"
    f = open(log, "w")
    proc = subprocess.Popen([Path(sys.executable).parent/"prodkit", "serve", "--port", str(port), *overrides], cwd=ROOT, stdout=f, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try: wait_live(url, proc=proc)
    except Exception: stop_process(proc); raise RuntimeError(f"server did not start:\n{log.read_text()}")
    return proc, url

def stop_process(proc, timeout: float = 20) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try: proc.wait(timeout)
        except subprocess.TimeoutExpired: proc.kill(); proc.wait(5)
    return proc.returncode

@contextlib.contextmanager
def thread_server(serve_cfg: dict):
    "The app for `serve_cfg` on a free loopback port, served by uvicorn in a thread"
    import uvicorn
    from prodkit.serving.app import create_app
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(serve_cfg), host="127.0.0.1", port=port, log_level="warning"))
    th = threading.Thread(target=server.run, daemon=True); th.start()
    url = f"http://127.0.0.1:{port}"
    try: wait_live(url, 30); yield url
    finally: server.should_exit = True; th.join(15)

def serve_config(**kw) -> dict:
    "The default serve config with `kw`; a `registry` of a test's own serves the one model it holds, as `--registry DIR` does"
    from prodkit.core.config import compose, to_dict
    return {**to_dict(compose().serve), **({"registry_model": None} if "registry" in kw else {}), **kw}
