"""``rfwp.analysis.sweep_records``: the runs it trains in worker processes end with the sweep."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

SWEEP = textwrap.dedent("""
    import os, sys, time
    from rfwp.analysis import sweep_records

    def run(value, seed, progress, train=True):
        if not train:
            return None   # no record: every run trains in a worker
        with open(os.path.join(sys.argv[1], f"{os.getpid()}.pid"), "w"):
            pass
        time.sleep(120)

    if __name__ == "__main__":
        sweep_records(run, [{"value": 0}, {"value": 1}], seeds=(0,), workers=2)
""")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:   # a zombie has ended, waiting for its parent to read it
        return stat.read().split(")")[-1].split()[0] != "Z"


@pytest.mark.skipif(sys.platform != "linux", reason="the workers learn of their sweep's death by prctl (Linux)")
def test_killing_a_sweep_ends_its_workers(tmp_path):
    script = tmp_path / "sweep.py"
    script.write_text(SWEEP)
    sweep = subprocess.Popen([sys.executable, str(script), str(tmp_path)], stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while len(list(tmp_path.glob("*.pid"))) < 2:
            assert time.monotonic() < deadline and sweep.poll() is None, "the two workers did not start"
            time.sleep(0.1)
        workers = [int(p.stem) for p in tmp_path.glob("*.pid")]
        assert all(map(_alive, workers))
        sweep.send_signal(signal.SIGKILL)   # the sweep alone: nothing of it can pass the signal on
        sweep.wait()
        deadline = time.monotonic() + 20
        while any(map(_alive, workers)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(map(_alive, workers)), "a worker trained on after its sweep was killed"
    finally:
        sweep.kill()
        for pid in [int(p.stem) for p in tmp_path.glob("*.pid")]:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


@pytest.mark.skipif(sys.platform != "linux", reason="the workers learn of their sweep's death by prctl (Linux)")
@pytest.mark.parametrize("parent_is_sweep", [True, False])
def test_a_worker_whose_sweep_died_before_it_started_ends(parent_is_sweep):
    # The sweep here is this test's process; a worker started after the sweep died has another parent.
    sweep_pid = os.getpid() if parent_is_sweep else os.getpid() + 1
    started = subprocess.run([sys.executable, "-c", f"from rfwp.analysis import _worker; _worker({sweep_pid}); "
                              "print('started')"], capture_output=True, text=True, timeout=120)
    assert (started.returncode, started.stdout.strip()) == ((0, "started") if parent_is_sweep else (1, ""))
