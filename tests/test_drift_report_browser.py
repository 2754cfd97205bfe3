"The drift report in a real browser: headless Chromium renders it offline and takes a screenshot (skipped without Chromium)."
import sys
import pytest
from conftest import ROOT

sys.path.insert(0, str(ROOT/"bench"))
import report_screenshot  # noqa: E402

@pytest.mark.slow
@pytest.mark.skipif(report_screenshot.chromium() is None, reason="no chromium on PATH: apt-get install -y chromium")
def test_the_report_renders_in_headless_chromium(tmp_path, capsys):
    page, png = report_screenshot.make_report(tmp_path), tmp_path/"report.png"
    assert report_screenshot.main([str(page), str(png)]) == 0 and "skipped" not in capsys.readouterr().out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000   # tables and plots, not a blank page
