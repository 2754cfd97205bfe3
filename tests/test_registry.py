"Registry: promote/rollback sequences, concurrent promotions from real processes, kill -9 mid-register, tampered files, restarts."
import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from prodkit.core.config import compose
from prodkit.research.split import InputSpec
from prodkit.research.model import build_model, save_model
from prodkit.core.schema import ExportConfig
from prodkit.release.onnx import export_onnx, onnx_metadata
from prodkit.release.registry import ModelIntegrityError, ModelRegistry, RegistryError

PASS = [{"gate": "accuracy >= 0.5", "passed": True, "message": "accuracy = 0.9 >= 0.5"}]
FAIL = [{"gate": "accuracy >= 0.95", "passed": False, "message": "gate `accuracy >= 0.95` failed: accuracy = 0.9 is 0.05 below 0.95"}]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    "Four small exported models (TorchScript exporter: fast; `fill` registers the first three) and one torch file"
    d = tmp_path_factory.mktemp("models")
    spec = InputSpec([f"f{i}" for i in range(4)], "target", 2, [4], [0.0] * 4, [1.0] * 4)
    out = []
    for seed in range(4):
        m = build_model(compose().model, spec, seed=seed).eval()
        save_model(m, d/f"m{seed}.pt")
        out.append(export_onnx(m, ExportConfig(dynamo=False), onnx_metadata(m, training_run_id=f"run{seed}", data_version="d" * 64))[0])
    return out, d/"m0.pt"


def fill(path, models, gates=(PASS, PASS, PASS)):
    reg = ModelRegistry(path)
    for onnx, g in zip(models[0], gates): reg.register(onnx, models[1], metrics={"accuracy": 0.9}, gates=g, who="test")
    return reg


def test_promote_rollback_sequence(tmp_path, models):
    reg = fill(tmp_path/"reg", models, (PASS, PASS, FAIL))
    assert reg.aliases() == {"candidate": 3}
    with pytest.raises(RegistryError, match="nothing to roll back to"): reg.rollback()
    reg.promote(1); assert reg.aliases() == {"candidate": 3, "production": 1}
    reg.promote("v2"); assert reg.aliases() == {"candidate": 3, "production": 2, "previous": 1}
    with pytest.raises(RegistryError, match=r"v3 cannot be promoted: gate `accuracy >= 0.95` failed: accuracy = 0.9 is 0.05 below 0.95"):
        reg.promote("candidate")
    assert reg.aliases()["production"] == 2                                  # a refused promotion moves nothing
    with pytest.raises(RegistryError, match="needs a reason"): reg.promote(3, force=True)
    reg.promote(3, force=True, reason="incident 42", who="oncall")
    assert reg.aliases() == {"candidate": 3, "production": 3, "previous": 2}
    reg.rollback(reason="bad latency")
    assert reg.aliases() == {"candidate": 3, "production": 2, "previous": 3}
    reg.rollback()                                                           # twice: back where it was
    assert reg.aliases() == {"candidate": 3, "production": 3, "previous": 2}
    h = reg.history()
    forced = [r for r in h if r["action"] == "promote --force"]
    assert [r["alias"] for r in forced] == ["previous", "production"] and forced[1]["who"] == "oncall"
    assert "incident 42" in forced[1]["reason"] and "failed gate" in forced[1]["reason"]
    assert [(r["alias"], r["from_version"], r["to_version"], r["reason"]) for r in h if r["action"] == "rollback"][:2] == \
        [("production", 3, 2, "bad latency"), ("previous", 2, 3, "bad latency")]
    assert all(r["at"] and r["who"] for r in h)


REL = [{"gate": "accuracy >= production - 0.01", "passed": True, "relative": True, "message": "accuracy = 0.9 >= 0.89"}]


@pytest.mark.slow
def test_a_production_comparison_goes_stale_when_production_moves(tmp_path, models):
    onnx, pt = models
    reg = ModelRegistry(tmp_path/"reg")
    reg.register(onnx[0], gates=REL, who="t"); reg.promote(1)                     # v1: production
    reg.register(onnx[1], gates=REL, baseline=1, who="t")                         # v2: measured against v1
    reg.register(onnx[2], gates=REL, baseline=1, who="t"); reg.promote(3)         # v3: measured against v1, promoted
    assert (reg.get(2).baseline, reg.aliases()) == (1, {"candidate": 3, "production": 3, "previous": 1})
    with pytest.raises(RegistryError) as e: reg.promote(2)
    msg = str(e.value)
    assert msg.startswith("v2 cannot be promoted: `accuracy >= production - 0.01` was measured against production v1, but production is now v3")
    assert "Release its run again to compare it with v3" in msg and "--force --reason" in msg
    assert reg.aliases()["production"] == 3                                       # refused: nothing moved
    reg.register(onnx[3], gates=REL, who="t")                                     # v4: measured when there was no production
    with pytest.raises(RegistryError, match="v4 cannot be promoted: .* was measured against no production model .* production is now v3"): reg.promote(4)
    reg.register(onnx[1], gates=PASS, baseline=1, who="t"); reg.promote(5)         # v5: no production gate, nothing to go stale
    reg.promote(2, force=True, reason="v2 is the one we want", who="oncall")
    assert reg.aliases()["production"] == 2
    forced = reg.history()[-1]
    assert forced["action"] == "promote --force" and "a comparison with an earlier production" in forced["reason"] and "v2 is the one" in forced["reason"]
    r = subprocess.run([Path(sys.executable).parent/"prodkit", "registry", "--registry", str(reg.path), "promote", "4"], capture_output=True, text=True)
    assert r.returncode == 1 and "v4 cannot be promoted" in r.stderr and "production is now v2" in r.stderr, r.stderr

def test_refs_and_unknowns(tmp_path, models):
    reg = fill(tmp_path/"reg", models)
    assert reg.get(3) == reg.get("v3") == reg.get("3") == reg.get("candidate")
    assert reg.get(3).version == 3 and reg.get("V3").run_id == "run2"
    with pytest.raises(RegistryError, match="no version or alias 'prod'"): reg.get("prod")
    with pytest.raises(RegistryError, match="no version v7"): reg.get(7)


def test_tampered_or_missing_model_file_is_refused_naming_the_file(tmp_path, models):
    reg = fill(tmp_path/"reg", models)
    v = reg.get(2)
    path = reg.path/"blobs"/v.onnx_sha256
    data = path.read_bytes()
    path.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(ModelIntegrityError) as e: reg.onnx_path(2)
    assert str(path) in str(e.value) and v.onnx_sha256 in str(e.value) and "its sha256 is" in str(e.value)
    with pytest.raises(ModelIntegrityError): reg.onnx_bytes("v2")
    assert reg.onnx_bytes(1) == models[0][0]                                 # the others still load
    path.unlink()
    with pytest.raises(ModelIntegrityError, match="is missing"): reg.onnx_path(2)


def test_registry_survives_a_restart_in_another_process(tmp_path, models):
    reg = fill(tmp_path/"reg", models)
    reg.promote(1); reg.promote(2)
    code = f"""
from prodkit.release.registry import ModelRegistry
r = ModelRegistry({str(tmp_path/'reg')!r})
import json; print(json.dumps(dict(aliases=r.aliases(), versions=[v.version for v in r.versions()], n=len(r.history()),
                                 same=r.onnx_bytes('production') == open(r.onnx_path(2), 'rb').read())))
"""
    out = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert out == dict(aliases={"candidate": 3, "production": 2, "previous": 1}, versions=[1, 2, 3], n=len(reg.history()), same=True)
    with sqlite3.connect(reg.path/"registry.db") as c: assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


PROMOTER = """
import os, sys, time
from prodkit.release.registry import ModelRegistry
path, version, n, ready = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
reg = ModelRegistry(path)
open(f"{ready}.{version}", "w").close()
while not all(os.path.exists(f"{ready}.{v}") for v in (2, 3)): time.sleep(0.001)   # both ready: start together
moved = 0
for i in range(n):
    moved += bool(reg.promote(version, who=f"proc{version}", reason=f"round {i}"))
    moved += bool(reg.promote(1, who=f"proc{version}", reason=f"back {i}"))
print(moved)
"""


def test_two_processes_promoting_at_once_never_lose_a_move(tmp_path, models):
    "Each promotion reads production and moves it to previous: a lost update would break the chain of audit rows"
    reg = fill(tmp_path/"reg", models)
    reg.promote(1)
    n = 15
    procs = [subprocess.Popen([sys.executable, "-c", PROMOTER, str(reg.path), str(v), str(n), str(tmp_path/"ready")],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for v in (2, 3)]
    moved = 0                                        # promotions that reported moving production
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        moved += int(out)
    moves = [r for r in reg.history() if r["alias"] == "production"]
    for before, after in zip(moves, moves[1:]): assert after["from_version"] == before["to_version"], (before, after)
    prev = [r for r in reg.history() if r["alias"] == "previous"]
    # every promotion that moved production kept the old one as previous, in the same order
    assert [r["to_version"] for r in prev] == [m["from_version"] for m in moves if m["from_version"] is not None]
    interleaved = any(a["who"] != b["who"] for a, b in zip(moves[1:], moves[2:]))
    assert interleaved, "the two processes never overlapped: the test did not test concurrency"
    assert len(moves) == 1 + moved, "a promotion reported a move the audit trail does not have"   # 1: the first reg.promote(1)
    assert reg.aliases()["production"] == moves[-1]["to_version"] and reg.aliases()["previous"] == moves[-1]["from_version"]
    with sqlite3.connect(reg.path/"registry.db") as c:
        assert c.execute("SELECT COUNT(*) FROM aliases WHERE name = 'production'").fetchone()[0] == 1


KILLED = """
import os, sys, time
import prodkit.release.store as S
path, onnx, marker, stage = sys.argv[1:5]
def stall():
    open(marker, "w").write(str(os.getpid()))
    time.sleep(60)
if stage == "blob":                       # die halfway through writing the model file, however it is opened
    import builtins
    class HalfWritten:
        def __init__(self, f): self.f = f
        def __enter__(self): return self
        def __exit__(self, *exc): self.f.close()
        def __getattr__(self, name): return getattr(self.f, name)
        def write(self, data): self.f.write(data[:len(data) // 2]); self.f.flush(); stall()
    def half(real): return lambda f, mode="r", *a, **k: HalfWritten(real(f, mode, *a, **k)) if "wb" in mode else real(f, mode, *a, **k)
    os.fdopen, builtins.open = half(os.fdopen), half(builtins.open)
else:                                     # die with the version row and its alias written, not committed
    real_move = S._move
    def slow_move(c, *a, **k): real_move(c, *a, **k); stall()
    S._move = slow_move
from prodkit.release.registry import ModelRegistry
ModelRegistry(path).register(open(onnx, "rb").read(), who="doomed")
"""


def state(reg):
    return reg.aliases(), [v.version for v in reg.versions()], len(reg.history()), sorted(p.name for p in (reg.path/"blobs").iterdir() if not p.name.startswith("."))


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["blob", "commit"])
def test_kill_9_during_register_leaves_no_half_written_version_or_file(tmp_path, models, stage):
    "New bytes (a fourth model): the process dies while writing its file, or inside the version's transaction"
    reg = fill(tmp_path/"reg", models)
    reg.promote(1)
    new = models[0][3]
    sha = hashlib.sha256(new).hexdigest()
    assert sha not in [v.onnx_sha256 for v in reg.versions()]
    before = state(reg)
    onnx, marker = tmp_path/"x.onnx", tmp_path/"marker"
    onnx.write_bytes(new)
    p = subprocess.Popen([sys.executable, "-c", KILLED, str(reg.path), str(onnx), str(marker), stage])
    try:
        deadline = time.time() + 60
        while not marker.exists() and time.time() < deadline and p.poll() is None: time.sleep(0.05)
        assert marker.exists(), f"the registering process never reached its {stage} stage"
        if stage == "blob":                # mid-write: the partial bytes are in a hidden temporary file, not under the sha
            tmps = [f for f in (reg.path/"blobs").iterdir() if f.name.startswith(f".{sha}.")]
            assert len(tmps) == 1 and 0 < tmps[0].stat().st_size < len(new) and not (reg.path/"blobs"/sha).exists()
        assert state(reg)[:3] == before[:3]                          # a reader meanwhile sees the old registry
        os.kill(p.pid, signal.SIGKILL)
        p.wait(timeout=10)
    finally:
        if p.poll() is None: p.kill()
    after = ModelRegistry(reg.path)
    aliases, versions, n_history, blobs = state(after)
    assert (aliases, versions, n_history) == before[:3]
    assert blobs == sorted(before[3] + ([sha] if stage == "commit" else []))   # commit: the whole file, unreferenced
    for v in after.versions(): assert after.onnx_bytes(v.version) == models[0][v.version - 1]      # every version still verifies
    with sqlite3.connect(after.path/"registry.db") as c: assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    v = after.register(new, who="survivor")                              # the lock is gone; numbering continues
    assert v.version == 4 and after.aliases()["candidate"] == 4 and after.onnx_bytes(4) == new
