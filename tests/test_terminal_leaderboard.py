"""The leaderboard in a terminal: fits the width with fewer columns (a number never split
over lines), says n = 1 instead of a zero spread, and is plain text when piped."""
import io
import os
import re
import subprocess
import sys

import pandas as pd
from rich.cells import cell_len
from rich.console import Console

from asyncfl_bench.results.report import leaderboard
from asyncfl_bench.results.terminal import fitting_columns, print_leaderboard

BOX = re.compile("[│┃━─┏┓┗┛╇┡┩]")
METHODS = ["fedavg-sync", "fedgen", "dc-asgd", "fedbuff", "fedecho", "gi-switch", "fedasync", "fedrevive", "ca2fl"]


def board_of(seeds: int, methods=METHODS) -> pd.DataFrame:
    runs, curves = [], []
    for i, method in enumerate(methods):
        for seed in range(seeds):
            final = 0.95 - 0.03 * i + 0.01 * seed
            runs.append({"task": "digits", "preset": "ci", "method": method, "seed": seed, "final_accuracy": final,
                         "best_accuracy": final, "target_accuracy": 0.8, "diverged": False, "diverged_at": None})
            curves.append(pd.DataFrame({"task": "digits", "preset": "ci", "method": method, "seed": seed,
                                        "time": [0.0, 20.0 + i, 47.0], "accuracy": [0.1, 0.81, final]}))
    return leaderboard(pd.DataFrame(runs), pd.concat(curves, ignore_index=True))


def render(board: pd.DataFrame, width: int, terminal: bool) -> str:
    buf = io.StringIO()
    console = Console(file=buf, width=width, force_terminal=terminal, color_system="standard" if terminal else None)
    print_leaderboard(console, board)
    return buf.getvalue()


def table_rows(text: str) -> dict[str, str]:
    """The line of each method's row (a method that wrapped would have no line of its own)."""
    plain = re.sub(r"\x1b\[[0-9;]*m", "", text)
    return {line.split()[0]: line for line in plain.splitlines() if line.split() and line.split()[0] in METHODS}


def test_piped_at_80_columns_plain_one_line_per_method_numbers_whole():
    board = board_of(seeds=3)
    text = render(board, 80, terminal=False)
    assert not BOX.search(text) and "\x1b[" not in text                      # plain: no box drawing, no colour
    assert all(cell_len(line) <= 80 for line in text.splitlines())
    rows = table_rows(text)
    assert list(rows) == list(board["method"])                               # every row on one line, in rank order
    for method, line in rows.items():
        cells = board.set_index("method").loc[method]
        assert cells["final_acc"] in line and cells["ttt"] in line           # "0.950 ± 0.025" never split
    assert "more columns in leaderboard.md:" in text


def test_one_seed_says_n_1_never_a_zero_spread():
    text = render(board_of(seeds=1), 80, terminal=False)
    assert "± 0.000" not in text
    assert all("(n = 1)" in line for line in table_rows(text).values())


def test_a_narrower_terminal_gets_fewer_columns_not_wrapped_ones():
    board = board_of(seeds=3)
    console = lambda width: Console(file=io.StringIO(), width=width)
    wide, narrow = (fitting_columns(console(w), board, True, "t") for w in (120, 50))
    assert narrow == wide[:len(narrow)] and len(narrow) < len(wide)        # the most important ones stay
    assert narrow[:2] == ["method", "final_acc"]
    text = render(board, 50, terminal=False)
    assert all(cell_len(line) <= 50 for line in text.splitlines())
    assert all(board.set_index("method").loc[m, "final_acc"] in line for m, line in table_rows(text).items())


def test_in_a_terminal_the_table_has_rules_and_bold_headings():
    text = render(board_of(seeds=3), 80, terminal=True)
    assert "─" in text and "\x1b[1m" in text
    assert all(cell_len(re.sub(r"\x1b\[[0-9;]*m", "", line)) <= 80 for line in text.splitlines())


def test_columns_that_say_nothing_are_left_out():
    board = board_of(seeds=2)
    assert "diverged" not in fitting_columns(Console(file=io.StringIO(), width=200), board, True, "t")
    board.loc[1, "diverged"] = "1 (at t=3.0)"
    assert "diverged" in fitting_columns(Console(file=io.StringIO(), width=200), board, True, "t")


def test_report_command_piped_in_80_columns(tmp_path):
    """End to end, as a user pipes it: `asyncfl-bench report | less` with COLUMNS=80."""
    from report_results import make_results

    results = make_results(tmp_path / "r")
    res = subprocess.run([sys.executable, "-m", "asyncfl_bench", "report", "--results", str(results)],
                         capture_output=True, text=True, check=False, env={**os.environ, "COLUMNS": "80"})
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    page = f"open {results / 'report' / 'report.html'}"   # one unbroken line, to copy into a browser
    assert page in lines
    assert all(cell_len(line) <= 80 for line in lines if line != page)
    assert not BOX.search(res.stdout)
    board = pd.read_csv(results / "report" / "leaderboard.csv").set_index("method")
    for method in ("fedavg-sync", "fedbuff[tuned]", "fedasync"):
        assert any(line.startswith(method) and board.loc[method, "final_acc"] in line for line in lines)


def test_variant_labels_are_shown_as_written():
    labels = ["fedbuff", "fedbuff[tuned]", "fedrevive[beta=fixed:0.5]"]
    text = render(board_of(seeds=2, methods=labels), 80, terminal=False)
    rows = [line.split()[0] for line in text.splitlines() if line.startswith(("fedbuff", "fedrevive"))]
    assert rows == labels                                     # square brackets are text, not Rich markup


def test_tuned_and_default_rows_are_separate_tables_named_by_their_budget():
    runs, curves = [], []
    for method, tuned, final in [("fedbuff", False, 0.80), ("fedasync", False, 0.70), ("fedbuff[tuned]", True, 0.75),
                                 ("fedasync[tuned]", True, 0.90)]:
        runs.append({"task": "digits", "preset": "ci", "method": method, "seed": 0, "final_accuracy": final,
                     "best_accuracy": final, "target_accuracy": 0.8, "diverged": False, "diverged_at": None,
                     "tuned": tuned, "tuning_budget": "12 trials × 1 run(s), mean_accuracy on validation" if tuned
                     else "", "effective_server_step": 0.125})
        curves.append(pd.DataFrame({"task": "digits", "preset": "ci", "method": method, "seed": 0,
                                    "time": [0.0, 20.0, 47.0], "accuracy": [0.1, 0.5, final]}))
    board = leaderboard(pd.DataFrame(runs), pd.concat(curves, ignore_index=True))
    lines = render(board, 100, terminal=False).splitlines()
    titles = [i for i, line in enumerate(lines) if "hyperparameters" in line and "·" in line]
    assert [lines[i].strip() for i in titles] == [
        "digits · preset ci · default hyperparameters",
        "digits · preset ci · tuned (12 trials × 1 run(s), mean_accuracy on validation) hyperparameters"]
    first = [line.split()[0] for line in lines[titles[0]:titles[1]] if line.startswith("fed")]
    second = [line.split()[0] for line in lines[titles[1]:] if line.startswith("fed")]
    assert first == ["fedbuff", "fedasync"] and second == ["fedasync[tuned]", "fedbuff[tuned]"]   # each best first
    assert any("server" in line for line in lines) and all("0.125" in line for line in lines if line.startswith("fed"))
    # each ranking against its own FedBuff: tuned fedasync beat tuned fedbuff, default fedasync lost to default fedbuff
    assert "1W/0L" in next(line for line in lines if line.startswith("fedasync[tuned]"))
    assert "0W/1L" in next(line for line in lines if line.startswith("fedasync "))
