"The prediction log survives a kill: a writer process killed with SIGKILL loses at most the batch in memory."
import os, signal, subprocess, sys, textwrap, time
import pytest
from prodkit.monitoring.prediction_log import PredictionLog, log_files, read_log

WRITER = textwrap.dedent('''
    import sys, time
    from prodkit.monitoring.prediction_log import PredictionLog
    plog = PredictionLog(sys.argv[1], format=sys.argv[2], batch_size=25, flush_seconds=3600, max_rows=200,
                         features=["x", "email"], pii=["email"])
    i = 0
    while True:                                   # until killed
        plog.log({"x": float(i), "email": f"user{i}@example.com", "password": "hunter2"}, {"prediction": i % 2, "confidence": 0.75}, "v1", f"r{i}")
        i += 1
        if i % 25 == 0: print(f"flushed {plog.written}", flush=True)
        time.sleep(0.0005)
''')

@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_a_killed_writer_loses_at_most_the_current_batch(tmp_path, fmt):
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path/"log"), fmt], stdout=subprocess.PIPE, text=True)
    flushed, deadline = 0, time.monotonic() + 60
    try:
        for line in proc.stdout:                         # let it write a few hundred rows, in several files
            flushed = int(line.split()[1])
            if flushed >= 600 or time.monotonic() > deadline: break
    finally:
        os.kill(proc.pid, signal.SIGKILL); proc.wait(timeout=10)
    assert flushed >= 600, "the writer did not get going"
    frame = read_log(tmp_path/"log")
    assert len(frame) >= flushed and len(frame) % 25 == 0           # every flushed batch is there, whole; only the batch in memory is lost
    assert frame["request_id"].tolist() == [f"r{i}" for i in range(len(frame))]   # in order, none torn or duplicated
    assert frame["x"].tolist() == [float(i) for i in range(len(frame))]
    assert "password" not in frame and frame["email"].str.startswith("sha256:").all()
    assert not list((tmp_path/"log").glob("*.tmp")) or fmt == "parquet"        # a parquet write in flight may leave a temp file, never read
    if fmt == "jsonl": assert len(log_files(tmp_path/"log")) >= 3              # rotated every 200 rows

def test_a_torn_jsonl_line_in_the_middle_is_an_error_not_silence(tmp_path):
    with PredictionLog(tmp_path, batch_size=2) as plog:
        for i in range(4): plog.log({"x": i}, {"prediction": 0})
    f = log_files(tmp_path)[0]
    lines = f.read_text().splitlines(); lines[1] = lines[1][:10]
    f.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match="line 2 is not JSON"): read_log(tmp_path)
