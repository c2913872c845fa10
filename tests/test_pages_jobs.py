"""pages/lib/jobs.py: the demo job's subprocess and the parser of its tqdm bars (no streamlit)."""

import sys

import pytest

from galaxy_core.io import progress_bar
from pages.lib import jobs


def test_parse_progress_reads_the_last_bar_of_carriage_return_output():
    text = "loading\ntrain:  10%|##   | 1/10\rtrain:  40%|#####   | 4/10\r"
    fraction, last = jobs.parse_progress(text)
    assert fraction == pytest.approx(0.4) and last.startswith("train:  40%")
    assert jobs.parse_progress("no bar yet\n") == (None, "no bar yet")
    assert jobs.tail_lines("a\nb 1%\rb 2%\nc", 2) == "b 2%\nc"


def test_parse_progress_reads_what_galaxy_core_io_progress_bar_prints(capsys):
    with progress_bar(8, desc="cache", unit="img") as bar:
        bar.update(2)
        bar.refresh()
    fraction, last = jobs.parse_progress(capsys.readouterr().err)
    assert fraction == pytest.approx(0.25) and last.startswith("cache:  25%|")


def test_an_epoch_bar_counts_as_the_whole_training():
    fraction, _ = jobs.parse_progress("Epoch 3/4:  50%|#####     | 5/10 [00:01<00:01, 5.0it/s]")
    assert fraction == pytest.approx((2 + 0.5) / 4)
    assert jobs.parse_progress("Epoch 4/4: 100%|##########| 10/10 [00:02<00:00]")[0] == 1.0


def test_the_old_hand_written_format_and_keras_progbar_are_not_read():
    assert jobs.parse_progress("train  40% |#####   | 4/10")[0] is None
    assert jobs.parse_progress("Epoch 3/6\n12/50 ━━━━━━━━━━ 2s 40ms/step - loss: 2.1")[0] is None


def test_job_collects_the_output_and_exit_code():
    script = "import sys; print('out'); sys.stderr.write('err\\n'); sys.exit(3)"
    with jobs.Job([sys.executable, "-c", script], cwd=".") as job:
        while job.read():
            pass
        code = job.wait()
    assert code == 3 and "out" in job.output and "err" in job.output


def test_leaving_a_job_early_terminates_its_process():
    with jobs.Job([sys.executable, "-c", "import time; print('go', flush=True); time.sleep(60)"], cwd=".") as job:
        job.read()
    assert job.proc.poll() is not None  # not left running


def test_demo_command_runs_train_py_demo_into_the_folder():
    command = jobs.demo_command("/tmp/runs/demo-x")
    assert command[0] == sys.executable and command[2:] == ["train.py", "--demo", "--out", "/tmp/runs/demo-x"]
