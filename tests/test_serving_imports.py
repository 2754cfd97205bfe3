"Serving imports the registry and onnxruntime only: never torch, train or the runner (the Dockerfile installs no torch)"
import subprocess, sys

def test_serving_modules_do_not_import_torch_train_or_runner():
    code = ("import sys, prodkit.serving.app, prodkit.serving.batch, prodkit.release.registry; from prodkit.serving.app import create_app; "
            "print(sorted(m for m in ('torch', 'prodkit.research.train', 'prodkit.jobs.runner', 'prodkit.release.onnx', 'prodkit.research.model') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]", out
