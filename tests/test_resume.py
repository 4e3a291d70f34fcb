"""Kill-and-resume: a sampler run in a subprocess is SIGKILLed right after its first checkpoint,
rerun with ``resume=True``, and its final state must equal the uninterrupted run bit for bit.

The worker (``_resume_worker.py``, one mode per sampler) sleeps after every checkpoint save
(``FLOWSAMP_RESUME_DELAY_S``) so the kill always lands mid-run; the resumed run and the
reference (same key, no checkpoint) run in one second subprocess.
"""

import ast
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

WORKER = Path(__file__).with_name("_resume_worker.py")
TIMEOUT_S = 900  # per subprocess; compilation alone took 3-5 min at load 19 on 2 cores


def _env(delay: float) -> dict:
    env = {**os.environ, "FLOWSAMP_RESUME_DELAY_S": str(delay)}
    env.pop("XLA_FLAGS", None)
    return env


def kill_and_resume(mode: str, tmp_path: Path) -> tuple[dict, dict, dict]:
    """Run MODE, SIGKILL it after the first checkpoint, resume; return (meta at kill, resumed, plain)."""
    ckpt, out = tmp_path / f"{mode}.msgpack", tmp_path / f"{mode}.npz"
    proc = subprocess.Popen([sys.executable, str(WORKER), mode, str(ckpt), str(out)], env=_env(600),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    start = time.monotonic()
    try:
        while not ckpt.exists():
            if proc.poll() is not None:
                raise AssertionError(f"worker ended before its first checkpoint:\n{proc.stdout.read().decode()}")
            if time.monotonic() - start > TIMEOUT_S:
                raise AssertionError("no checkpoint within the time limit")
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=60) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    done = subprocess.run([sys.executable, str(WORKER), mode, str(ckpt), str(out), "--resume"], env=_env(0),
                          capture_output=True, text=True, timeout=TIMEOUT_S)
    assert done.returncode == 0, done.stdout + done.stderr
    data = np.load(out)
    meta = ast.literal_eval(str(data["meta"]))
    resumed = {k[len("resumed"):]: data[k] for k in data.files if k.startswith("resumed")}
    plain = {k[len("plain"):]: data[k] for k in data.files if k.startswith("plain")}
    return meta, resumed, plain


def assert_bit_identical(resumed: dict, plain: dict) -> None:
    assert resumed.keys() == plain.keys() and resumed
    for k in plain:
        a, b = resumed[k], plain[k]
        assert a.dtype == b.dtype and a.shape == b.shape, k
        assert np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"), f"{k} differs after resume"


def test_sample_killed_and_resumed_is_bit_identical(tmp_path):
    meta, resumed, plain = kill_and_resume("sample", tmp_path)
    assert meta["sampler"] == "fs.sample" and 0 < meta["done"] < int(plain["['num_steps']"])
    assert_bit_identical(resumed, plain)


@pytest.mark.slow  # ~25 s of CPU; the in-process interrupted WL resume is in test_resume_errors.py
def test_wang_landau_killed_and_resumed_is_bit_identical(tmp_path):
    meta, resumed, plain = kill_and_resume("wang_landau", tmp_path)
    assert meta["sampler"] == "wang_landau" and 0 < meta["done"] < int(plain["['times']"][-1])
    assert_bit_identical(resumed, plain)


@pytest.mark.slow
def test_multicanonical_killed_and_resumed_is_bit_identical(tmp_path):
    meta, resumed, plain = kill_and_resume("multicanonical", tmp_path)
    assert meta["sampler"] == "multicanonical" and (meta["phase"], meta["done_chunks"]) < (3, 6)
    assert_bit_identical(resumed, plain)


@pytest.mark.slow  # two subprocesses, ~1 min of compilation at load; the in-process PT resume is in the default suite
def test_parallel_tempering_killed_and_resumed_is_bit_identical(tmp_path):
    meta, resumed, plain = kill_and_resume("parallel_tempering", tmp_path)
    assert meta["sampler"] == "parallel_tempering" and meta["done"] + meta["prod_done"] < 70
    assert_bit_identical(resumed, plain)


@pytest.mark.slow
def test_fab_killed_and_resumed_is_bit_identical(tmp_path):
    meta, resumed, plain = kill_and_resume("fab", tmp_path)
    assert meta["sampler"] == "fab" and meta["done"] < 6
    assert_bit_identical(resumed, plain)


@pytest.mark.slow
def test_craft_killed_and_resumed_is_bit_identical(tmp_path):
    meta, resumed, plain = kill_and_resume("craft", tmp_path)
    assert meta["sampler"] == "craft" and meta["done"] < 6
    assert_bit_identical(resumed, plain)
