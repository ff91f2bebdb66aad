"""The model cache's staging directories: a conversion killed mid-way leaves one, and the next
conversion into the same cache removes it; a live conversion's stays."""

import os
import subprocess
import sys

from workers.model_cache import staged, sweep


def test_a_dead_conversions_staging_is_swept_and_a_live_ones_kept(tmp_path):
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead = tmp_path / f".converting-{gone.stdout.strip()}-abc"
    live = tmp_path / f".converting-{os.getpid()}-def"
    old_style = tmp_path / ".converting-x1y2"  # named before the pid was in the name
    for directory in (dead, live, old_style):
        (directory / "model").mkdir(parents=True)
    sweep(tmp_path)
    assert not dead.exists() and not old_style.exists() and live.exists()


def test_staging_sweeps_first_and_moves_the_model_into_place(tmp_path):
    stale = tmp_path / ".converting-999999999-zzz"
    stale.mkdir()
    with staged(tmp_path / "target", "done.txt") as staging:
        (staging.model / "done.txt").write_text("ok")
        assert staging.scratch.name.startswith(f".converting-{os.getpid()}-")
    assert (tmp_path / "target" / "done.txt").read_text() == "ok"
    assert not stale.exists() and not list(tmp_path.glob(".converting-*"))
