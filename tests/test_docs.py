"`make docs`: the notebooks as a static site, built offline, with API pages, the config reference, working links, local assets."
import sys
import pytest
from conftest import ROOT
from prodkit.cli.docs import DocsError, build, check_site, render

sys.path.insert(0, str(ROOT/"bench"))
import report_screenshot  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::PendingDeprecationWarning")   # myst-parser on Sphinx 9

@pytest.fixture(scope="module")
def site(tmp_path_factory):
    return build(tmp_path_factory.mktemp("site"))

@pytest.mark.slow
def test_the_site_has_every_notebook_the_api_and_the_config_reference(site):
    pages = {p.relative_to(site).as_posix() for p in site.rglob("*.html")}
    nbs = {p.relative_to(ROOT/"nbs").with_suffix(".html").as_posix() for p in (ROOT/"nbs").glob("*/*.ipynb")}
    assert nbs <= pages and "reference/config.html" in pages and "index.html" in pages
    config = (site/"core"/"01_config.html").read_text()
    assert 'id="compose"' in config and "a config file in conf/, without .yaml" in config       # show_doc, from the package
    assert "#| export" not in config and "show_doc(" not in config                              # nbdev's processing ran
    cli = (site/"cli"/"85_release.html").read_text()
    assert "prodkit promote [OPTIONS] REF" in cli and "Command.__call__" not in cli              # a command shows its --help
    ref = (site/"reference"/"config.html").read_text()
    assert "train.epochs" in ref and "gates.rules" in ref

@pytest.mark.slow
def test_links_resolve_and_nothing_is_fetched_from_elsewhere(site):
    assert check_site(site) == []
    assert 'href="../research/12_model.html#build-model"' in (site/"core"/"01_config.html").read_text()  # nbdev's link, made relative

def test_a_broken_link_fails_the_build(tmp_path):
    (tmp_path/"src").mkdir(); (tmp_path/"src"/"index.md").write_text("# Home\n\nSee [the model](research/12_model.ipynb).\n")
    with pytest.raises(DocsError, match="failed"): render(tmp_path/"src", tmp_path/"out")

@pytest.mark.slow
@pytest.mark.skipif(report_screenshot.chromium() is None, reason="no chromium on PATH: apt-get install -y chromium")
def test_a_page_renders_in_headless_chromium(site, tmp_path):
    png = tmp_path/"gates.png"
    report_screenshot.screenshot(site/"release"/"31_gates.html", png, report_screenshot.chromium(), height=1400)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 50_000   # text and code, not a blank page
