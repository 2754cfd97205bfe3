"Registry: promote/rollback sequences, concurrent promotions from real processes, kill -9 mid-register, tampered files, restarts."
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
from prodkit.config import compose
from prodkit.split import InputSpec
from prodkit.model import build_model, save_model
from prodkit.onnx import ExportSettings, export_onnx, onnx_metadata
from prodkit.registry import ModelIntegrityError, ModelRegistry, RegistryError

PASS = [{"gate": "accuracy >= 0.5", "passed": True, "message": "accuracy = 0.9 >= 0.5"}]
FAIL = [{"gate": "accuracy >= 0.95", "passed": False, "message": "gate `accuracy >= 0.95` failed: accuracy = 0.9 is 0.05 below 0.95"}]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    "Three small exported models (TorchScript exporter: fast) and one torch file"
    d = tmp_path_factory.mktemp("models")
    spec = InputSpec([f"f{i}" for i in range(4)], "target", 2, [4], [0.0] * 4, [1.0] * 4)
    out = []
    for seed in range(3):
        m = build_model(compose().model, spec, seed=seed).eval()
        save_model(m, d/f"m{seed}.pt")
        out.append(export_onnx(m, ExportSettings(dynamo=False), onnx_metadata(m, training_run_id=f"run{seed}", data_version="d" * 64))[0])
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
from prodkit.registry import ModelRegistry
r = ModelRegistry({str(tmp_path/'reg')!r})
import json; print(json.dumps(dict(aliases=r.aliases(), versions=[v.version for v in r.versions()], n=len(r.history()),
                                 same=r.onnx_bytes('production') == open(r.onnx_path(2), 'rb').read())))
"""
    out = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert out == dict(aliases={"candidate": 3, "production": 2, "previous": 1}, versions=[1, 2, 3], n=len(reg.history()), same=True)
    with sqlite3.connect(reg.path/"registry.db") as c: assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


PROMOTER = """
import os, sys, time
from prodkit.registry import ModelRegistry
path, version, n, ready = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
reg = ModelRegistry(path)
open(f"{ready}.{version}", "w").close()
while not all(os.path.exists(f"{ready}.{v}") for v in (2, 3)): time.sleep(0.001)   # both ready: start together
for i in range(n):
    reg.promote(version, who=f"proc{version}", reason=f"round {i}")
    reg.promote(1, who=f"proc{version}", reason=f"back {i}")
"""


def test_two_processes_promoting_at_once_never_lose_a_move(tmp_path, models):
    "Each promotion reads production and moves it to previous: a lost update would break the chain of audit rows"
    reg = fill(tmp_path/"reg", models)
    reg.promote(1)
    n = 15
    procs = [subprocess.Popen([sys.executable, "-c", PROMOTER, str(reg.path), str(v), str(n), str(tmp_path/"ready")], stderr=subprocess.PIPE, text=True)
             for v in (2, 3)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    moves = [r for r in reg.history() if r["alias"] == "production"]
    for before, after in zip(moves, moves[1:]): assert after["from_version"] == before["to_version"], (before, after)
    prev = [r for r in reg.history() if r["alias"] == "previous"]
    # every promotion that moved production kept the old one as previous, in the same order
    assert [r["to_version"] for r in prev] == [m["from_version"] for m in moves if m["from_version"] is not None]
    interleaved = any(a["who"] != b["who"] for a, b in zip(moves[1:], moves[2:]))
    assert interleaved, "the two processes never overlapped: the test did not test concurrency"
    assert reg.aliases()["production"] == moves[-1]["to_version"] and list(reg.aliases()).count("production") == 1


KILLED = """
import os, sys, time
import prodkit.registry as R
path, onnx, marker = sys.argv[1], sys.argv[2], sys.argv[3]
real = R._move
def slow_move(c, *a, **k):
    real(c, *a, **k)                      # the version row and its alias are written, not committed
    open(marker, "w").write(str(os.getpid()))
    time.sleep(60)
R._move = slow_move
R.ModelRegistry(path).register(open(onnx, "rb").read(), who="doomed")
"""


def test_kill_9_during_register_leaves_no_half_written_version(tmp_path, models):
    reg = fill(tmp_path/"reg", models)
    reg.promote(1)
    before = (reg.aliases(), [v.version for v in reg.versions()], len(reg.history()))
    onnx, marker = tmp_path/"x.onnx", tmp_path/"marker"
    onnx.write_bytes(models[0][2] + b"")
    p = subprocess.Popen([sys.executable, "-c", KILLED, str(reg.path), str(onnx), str(marker)])
    try:
        deadline = time.time() + 60
        while not marker.exists() and time.time() < deadline and p.poll() is None: time.sleep(0.05)
        assert marker.exists(), "the registering process never reached its transaction"
        os.kill(p.pid, signal.SIGKILL)
        p.wait(timeout=10)
    finally:
        if p.poll() is None: p.kill()
    after = ModelRegistry(reg.path)
    assert (after.aliases(), [v.version for v in after.versions()], len(after.history())) == before
    with sqlite3.connect(after.path/"registry.db") as c: assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    v = after.register(models[0][2], who="survivor")                      # the lock is gone; numbering continues
    assert v.version == 4 and after.aliases()["candidate"] == 4
