"""The HTML report: built from a hand-made results folder (tests/report_results.py), then
loaded in headless Chromium (leaderboard and every plot present, toggles and sorting work,
no network request)."""
import importlib.util
import json
import shutil
import subprocess
import sys

import pytest
from report_results import MACHINE, make_results, write_run, write_study

from asyncfl_bench.results.report import build_report

EXPECTED_PLOTS = {"accuracy-time", "accuracy-arrivals", "staleness", "server-cost", "tuning-sensitivity"}


def test_sensitivity_plots_from_the_study_and_a_damaged_study_costs_only_them(tmp_path):
    results = make_results(tmp_path / "r", tuning=True)
    write_study(results / "tuned" / "digits-ci.db")
    build_report(results, results / "report")
    page = (results / "report" / "report.html").read_text()
    assert page.count('data-plot="tuning-sensitivity"') == 1 and "fedbuff: 3 trials" in page   # one per method

    (results / "tuned" / "digits-ci.db").write_bytes(b"not a database" * 100)   # damaged: say so, report the rest
    build_report(results, results / "report2")
    page = (results / "report2" / "report.html").read_text()
    assert "No sensitivity plot: the study database tuned/digits-ci.db is unreadable" in page
    assert 'data-plot="accuracy-time"' in page and "<h3>Tuning</h3>" in page


def test_diagnostics_are_extra_leaderboard_columns(tmp_path):
    results = make_results(tmp_path / "r")
    for summary in results.glob("digits/fedasync/*/summary.json"):   # one method records diagnostics
        data = json.loads(summary.read_text())
        data["diagnostics"] = {"mean_beta": 0.25, "kd_to_delta_ratio": 1.5, "note": "text is left out"}
        summary.write_text(json.dumps(data))
    board, _ = build_report(results, results / "report")
    page = (results / "report" / "report.html").read_text()
    assert ">mean_beta</th>" in page and ">kd_to_delta_ratio</th>" in page and ">note</th>" not in page
    rows = board.set_index("method")
    assert rows.loc["fedasync", "diagnostics.mean_beta"] == "0.25"
    assert rows.loc["fedavg-sync", "diagnostics.kd_to_delta_ratio"] == "—"


def test_page_holds_every_section_and_links_each_config(tmp_path):
    results = make_results(tmp_path / "r", tuning=True, claims=True)
    _, written = build_report(results, results / "report")
    page = (results / "report" / "report.html").read_text()
    assert written[0] == results / "report" / "report.html"
    for plot in EXPECTED_PLOTS:
        assert f'data-plot="{plot}"' in page
    assert page.count("<svg") == len(EXPECTED_PLOTS) + 1 and 'data-plot="claims"' in page   # + the claims plot
    assert 'id="claims"' in page and "fedbuff-vs-fedasync" in page and "1.29× faster [0.79, 2.08]" in page
    assert "<h3>scale ci</h3>" in page and "small.csv is not readable (EmptyDataError)" in page
    assert ">run_seconds<" not in page and ">paper&#x27;s figure<" in page    # the shown columns, named
    claims_md = (results / "report" / "claims.md").read_text()
    assert results / "report" / "claims.md" in written and "## scale ci" in claims_md
    assert "| fedbuff-vs-fedasync | fedasync | FedBuff | up to 2.5x |" in claims_md
    assert "![claims at scale ci](claims-ci.png)" in claims_md and (results / "report" / "claims-ci.png").stat().st_size
    assert "claims at scale small" not in claims_md            # the unreadable file has no plot
    assert "<h3>Tuning</h3>" in page and "server_lr=0.5" in page and "3 trials per method" in page
    assert page.count('class="badge tuned"') == 1 and 'class="badge ref"' in page   # fedbuff: tuned, reference
    assert "3 trials × 1 run(s), final_accuracy on validation" in page          # the budget, with the mark
    assert "fedasync seed 1 at t=5.0" in page                                    # diverged runs named
    assert "Left out: fedavg-sync (synchronous rounds, τ = 0)" in page          # staleness: the shared schedule
    assert "<h3>Machine and versions</h3>" in page and MACHINE["cpu"] in page and "2.13.0+cpu" in page
    assert "Built with Python" in page                                           # the report's own versions
    links = [part.split('"')[0] for part in page.split('<a href="')[1:] if not part.startswith("#")]
    assert len(links) == 6 and all((results / "report" / link).resolve().is_file() for link in links)
    assert "http://" not in page.replace("http://www.w3.org", "") and "https://" not in page   # nothing fetched
    build_report(results, results / "report")
    assert (results / "report" / "report.html").read_text() == page               # the same page every time


def test_optional_sections_only_when_their_files_exist(tmp_path):
    results = make_results(tmp_path / "r", seeds=(0,), trace="intertwined:classes=1")
    build_report(results, results / "report")
    page = (results / "report" / "report.html").read_text()
    assert 'id="claims"' not in page and "<h3>Tuning</h3>" not in page
    assert 'data-plot="slow-class"' in page and "1 (slow)" in page                # intertwined: slow classes
    _, written = build_report(results, tmp_path / "md-only", with_html=False)
    assert not (tmp_path / "md-only" / "report.html").exists() and all(p.exists() for p in written)


def test_runs_record_the_machine_the_page_shows():
    from asyncfl_bench.simulation.device import machine

    found = machine("cpu")
    assert set(found) == set(MACHINE) and found["accelerator"] == "none"   # the fixture has a run's fields
    assert found["cpus"] >= 1 and found["torch"] and found["cpu"]


def test_report_command_does_not_import_torch(tmp_path):
    results = make_results(tmp_path / "r", tuning=True)
    code = ("import sys\nfrom asyncfl_bench.cli import app\n"
            f"try:\n    app(['report', '--results', {str(results)!r}])\nexcept SystemExit as e:\n    assert not e.code\n"
            "assert 'torch' not in sys.modules, 'report imported torch'")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stderr
    assert (results / "report" / "report.html").exists()


# -- in a real browser ------------------------------------------------------------------------------------

def _browser():
    """A headless Chromium under Selenium that logs network events and console messages."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not (chromium and driver and importlib.util.find_spec("selenium")):
        pytest.skip("needs headless Chromium: apt-get install -y chromium chromium-driver; pip install selenium")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    return webdriver.Chrome(service=Service(driver), options=opts)


def _requests(browser) -> list[str]:
    """URLs the page asked for since the last call (Chrome DevTools network events)."""
    events = [json.loads(e["message"])["message"] for e in browser.get_log("performance")]
    return [e["params"]["request"]["url"] for e in events if e["method"] == "Network.requestWillBeSent"]


def _open(browser, url: str, width: int) -> None:
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                            {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": width < 600})
    browser.get(url)


def test_page_in_headless_chromium(tmp_path):
    results = make_results(tmp_path / "r", tuning=True, claims=True)
    build_report(results, results / "report")
    url = (results / "report" / "report.html").resolve().as_uri()
    probe = tmp_path / "probe.html"   # shows that a fetch would be seen: the check below can fail
    probe.write_text('<!doctype html><img src="http://asyncfl-bench.invalid/x.png">')
    browser = _browser()
    try:
        _open(browser, probe.as_uri(), 1280)
        assert any(u.startswith("http://asyncfl-bench.invalid") for u in _requests(browser))
        browser.get_log("browser")

        _open(browser, url, 1280)
        assert _requests(browser) == [url]                                         # the page itself, nothing else
        errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, errors                                                  # no script or CSP error
        rankings = ("return [...document.querySelectorAll('table.leaderboard')].map(t => "
                    "[t.closest('.scroll').previousElementSibling.textContent, "
                    "[...t.tBodies[0].rows].map(r => r.cells[0].dataset.sort)])")
        # default and tuned rows in separate rankings, each best final accuracy first
        assert browser.execute_script(rankings) == [
            ["On default hyperparameters", ["fedavg-sync", "fedasync"]],
            ["On tuned hyperparameters: 3 trials × 1 run(s), final_accuracy on validation", ["fedbuff[tuned]"]]]
        sizes = browser.execute_script(
            "return Object.fromEntries([...document.querySelectorAll('figure[data-plot]')].map(f => "
            "[f.dataset.plot, [f.querySelector('svg').getBoundingClientRect().width, "
            "f.querySelectorAll('svg path').length]]))")
        assert set(sizes) == EXPECTED_PLOTS | {"claims"} and all(w > 300 and paths > 10
                                                                 for w, paths in sizes.values()), sizes

        # sorting: "final acc" ascending puts the lowest first, in that ranking only
        browser.execute_script("[...document.querySelector('table.leaderboard').tHead.rows[0].cells]"
                               ".find(th => th.textContent.startsWith('final acc')).click()")
        assert [rows for _, rows in browser.execute_script(rankings)] == [["fedasync", "fedavg-sync"], ["fedbuff[tuned]"]]

        # toggling a method off hides its line and band in that figure only
        hidden = browser.execute_script("""
            const fig = document.querySelector('figure[data-plot="accuracy-time"]');
            const box = fig.querySelector('.legend input[data-method="1"]');
            box.click();
            const mine = [...fig.querySelectorAll('[id^="' + fig.id + '-m1-"]')];
            const others = [...fig.querySelectorAll('[id^="' + fig.id + '-m0-"]')];
            return [mine.length, mine.every(e => getComputedStyle(e).display === 'none'),
                    others.some(e => getComputedStyle(e).display === 'none')]""")
        assert hidden == [3, True, False]                                          # line, band, end dot

        # pointing at a legend entry dims every other method in that figure, leaving it restores them
        opacity = browser.execute_script("""
            const fig = document.querySelector('figure[data-plot="accuracy-arrivals"]');
            const label = fig.querySelector('.legend input[data-method="2"]').closest('label');
            const seen = m => [...fig.querySelectorAll('[id^="' + fig.id + '-m' + m + '-"]')]
                .map(e => getComputedStyle(e).opacity);
            label.dispatchEvent(new MouseEvent('mouseenter'));
            const during = [seen(0), seen(2)];
            label.dispatchEvent(new MouseEvent('mouseleave'));
            return [...during, seen(0)]""")
        assert opacity == [["0.12"] * 3, ["1"] * 3, ["1"] * 3], opacity

        _open(browser, url, 390)                                                    # phone width
        assert browser.execute_script("return document.documentElement.scrollWidth") <= 390   # tables scroll inside
        width = browser.execute_script(
            "return document.querySelector('figure[data-plot=\"accuracy-time\"] svg').getBoundingClientRect().width")
        assert 300 < width <= 390

        # long variant labels (one method run with settings that differ) wrap, in tables, legends and captions
        for i, value in enumerate(("a" * 40, "b" * 40)):
            write_run(results, "fedasync", 0, 0.6, params={"synthesiser": value, "x_long_setting": i, "y": i, "z": i})
        build_report(results, results / "report")
        _open(browser, url, 390)
        labels = browser.execute_script(
            "return [...document.querySelectorAll('table.leaderboard tbody tr')].map(r => r.cells[0].dataset.sort)")
        assert sum(len(label) > 50 for label in labels) == 3, labels   # the first fedasync runs lack those settings
        assert browser.execute_script("return document.documentElement.scrollWidth") <= 390
        cell = browser.execute_script("return document.querySelector('table.leaderboard td').getBoundingClientRect()"
                                      ".width")
        assert cell <= 0.5 * 390   # the method column leaves room for numbers beside it
    finally:
        browser.quit()
