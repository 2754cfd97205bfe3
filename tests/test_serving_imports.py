"Serving imports the registry and onnxruntime only: never torch, train or the runner (the Dockerfile installs no torch)"
import subprocess, sys

def test_serving_modules_do_not_import_torch_train_or_runner():
    code = ("import sys, prodkit.serve_app, prodkit.batch, prodkit.registry; from prodkit.serve_app import create_app; "
            "print(sorted(m for m in ('torch', 'prodkit.train', 'prodkit.runner', 'prodkit.onnx', 'prodkit.model') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]", out
