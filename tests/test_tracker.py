"""TensorBoard export: event files written from a run folder read back with TensorBoard's own reader."""
import json
import sys

import pandas as pd
import pytest

from asyncfl_bench.errors import UserError
from asyncfl_bench.results.tracker import check_tracker, default_logdir, export_run


def _run_folder(root, method="fedbuff", seed=0, rid="abc123"):
    folder = root / "digits" / method / rid
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"task": "digits", "preset": "ci", "method": method, "seed": seed}))
    pd.DataFrame({"arrivals": [0, 10, 20], "version": [0, 2, 4], "time": [0.0, 3.5, 7.25],
                  "accuracy": [0.1, 0.6, 0.8], "loss": [2.3, 1.1, 0.6],
                  "class_acc_0": [0.0, 0.5, 0.9], "class_acc_1": [0.2, 0.7, 0.7]}).to_csv(folder / "curve.csv", index=False)
    pd.DataFrame({"arrival": range(1, 21), "client": 0, "time": [0.35 * i for i in range(1, 21)],
                  "staleness": [i % 4 for i in range(20)], "base_version": 0}).to_csv(folder / "arrivals.csv", index=False)
    (folder / "summary.json").write_text(json.dumps({"arrivals": 20, "final_time": 7.25, "server_ms_per_arrival": 0.42}))
    return folder


def test_event_file_reads_back_on_virtual_time(tmp_path):
    pytest.importorskip("tensorboard", reason="the optional extra `tensorboard` is not installed")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    folder = _run_folder(tmp_path / "results")
    check_tracker("tensorboard")
    written = export_run(folder, tmp_path / "tb")
    assert written == tmp_path / "tb" / "digits" / "ci" / "fedbuff" / "seed0-abc123"
    acc = EventAccumulator(str(written))
    acc.Reload()
    assert {"test/accuracy", "test/loss", "test/class_accuracy/0", "test/class_accuracy/1",
            "schedule/staleness", "server/ms_per_arrival"} <= set(acc.Tags()["scalars"])
    accuracy = acc.Scalars("test/accuracy")
    assert [e.step for e in accuracy] == [0, 10, 20]                        # step: arrivals
    assert [e.wall_time for e in accuracy] == [0.0, 3.5, 7.25]              # wall time: virtual time
    assert [e.value for e in accuracy] == pytest.approx([0.1, 0.6, 0.8])
    assert [e.value for e in acc.Scalars("test/class_accuracy/1")] == pytest.approx([0.2, 0.7, 0.7])
    staleness = acc.Scalars("schedule/staleness")
    assert len(staleness) == 20 and [e.value for e in staleness[:5]] == [0, 1, 2, 3, 0]
    [cost] = acc.Scalars("server/ms_per_arrival")
    assert (cost.step, cost.wall_time, cost.value) == (20, 7.25, pytest.approx(0.42))


def test_exporting_again_replaces_the_events(tmp_path):
    pytest.importorskip("tensorboard", reason="the optional extra `tensorboard` is not installed")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    folder = _run_folder(tmp_path / "results")
    export_run(folder, tmp_path / "tb")
    written = export_run(folder, tmp_path / "tb")                 # a reused run is exported again
    assert len(list(written.glob("events.out.tfevents.*"))) == 1
    acc = EventAccumulator(str(written))
    acc.Reload()
    assert len(acc.Scalars("test/accuracy")) == 3


def test_unknown_tracker_and_missing_package_are_user_errors(monkeypatch):
    check_tracker(None)                                      # no --log: nothing to check
    with pytest.raises(UserError, match="unknown tracker 'wandb'.*valid: tensorboard"):
        check_tracker("wandb")
    monkeypatch.setitem(sys.modules, "tensorboard", None)    # as if the extra were not installed
    monkeypatch.setitem(sys.modules, "tensorboard.summary.writer.event_file_writer", None)
    with pytest.raises(UserError, match=r"pip install 'asyncfl-bench\[tensorboard\]'"):
        check_tracker("tensorboard")


def test_an_unfinished_run_is_a_user_error(tmp_path):
    folder = _run_folder(tmp_path / "results")
    (folder / "summary.json").unlink()                       # interrupted: no summary yet
    with pytest.raises(UserError, match="no finished run"):
        export_run(folder, tmp_path / "tb")
    assert not (tmp_path / "tb").exists()


def test_trial_runs_export_validation_accuracy_only(tmp_path):
    pytest.importorskip("tensorboard", reason="the optional extra `tensorboard` is not installed")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    folder = _run_folder(tmp_path / "results")
    curve = pd.read_csv(folder / "curve.csv")
    curve["val_accuracy"], curve["accuracy"] = curve["accuracy"], float("nan")   # evaluated on validation only
    curve.to_csv(folder / "curve.csv", index=False)
    acc = EventAccumulator(str(export_run(folder, default_logdir(tmp_path / "results"))))
    acc.Reload()
    assert "test/accuracy" not in acc.Tags()["scalars"]
    assert [e.value for e in acc.Scalars("validation/accuracy")] == pytest.approx([0.1, 0.6, 0.8])
