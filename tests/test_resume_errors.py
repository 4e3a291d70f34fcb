"""Checkpoint errors and in-process resume: corrupt, foreign and mismatched checkpoints are
clear errors naming the problem; an interrupted checkpointed run resumes bit for bit."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import flowsamp as fs
from flowsamp import io as fio

KERNEL = fs.kernels.mala(lambda x: -0.5 * jnp.sum(x**2), 0.5)
X0 = jnp.zeros((4, 2))
ISING = fs.targets.ising(3, 0.4)
pytestmark = pytest.mark.filterwarnings("ignore::flowsamp.NotConvergedWarning")  # runs far too short on purpose


def _equal(a, b):
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    return len(la) == len(lb) and all(
        np.array_equal(np.asarray(x), np.asarray(y), equal_nan=True) for x, y in zip(la, lb)
    )


class Interrupt(Exception):
    pass


def _interrupt_after(monkeypatch, n):
    save, calls = fio.save, []

    def failing(*args, **kwargs):
        save(*args, **kwargs)
        calls.append(1)
        if len(calls) == n:
            raise Interrupt

    monkeypatch.setattr(fio, "save", failing)


@pytest.fixture(scope="module")
def sample_ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("ck") / "sample.msgpack"
    plain = fs.sample(0, KERNEL, X0, 60, warn=False)
    fs.sample(0, KERNEL, X0, 60, warn=False, checkpoint_path=path, checkpoint_every=20)
    return path, plain


def test_checkpointed_sample_equals_plain_and_interrupted_resumes(sample_ckpt, tmp_path, monkeypatch):
    path, plain = sample_ckpt
    full = fs.sample(0, KERNEL, X0, 60, warn=False, checkpoint_path=path, checkpoint_every=20, resume=True)
    assert _equal(tuple(full)[:8], tuple(plain)[:8])
    part = tmp_path / "part.msgpack"
    _interrupt_after(monkeypatch, 2)
    with pytest.raises(Interrupt):
        fs.sample(0, KERNEL, X0, 60, warn=False, checkpoint_path=part, checkpoint_every=20)
    monkeypatch.undo()
    assert fio.read_meta(part)["done"] == 40
    again = fs.sample(0, KERNEL, X0, 60, warn=False, checkpoint_path=part, checkpoint_every=20, resume=True)
    assert _equal(tuple(again)[:8], tuple(plain)[:8])


def test_interrupted_wang_landau_resumes_bit_identical(tmp_path, monkeypatch):
    kw = dict(num_walkers=2, check_every=10, max_sweeps=60, checkpoint_every=20)
    path = tmp_path / "wl.msgpack"
    plain = fs.samplers.wang_landau(0, ISING, **{**kw, "checkpoint_every": None})
    _interrupt_after(monkeypatch, 1)
    with pytest.raises(Interrupt):
        fs.samplers.wang_landau(0, ISING, **kw, checkpoint_path=path)
    monkeypatch.undo()
    assert fio.read_meta(path)["done"] == 20
    res = fs.samplers.wang_landau(0, ISING, **kw, checkpoint_path=path, resume=True)
    assert _equal(res.state, plain.state) and _equal(res.log_g, plain.log_g)
    assert _equal((res.times, res.errors, res.log_f), (plain.times, plain.errors, plain.log_f))


@pytest.mark.parametrize(
    "change, match",
    [
        (dict(key=1), "meta\\['key'\\]"),
        (dict(initial_positions=jnp.ones((4, 2))), "meta\\['initial'\\]"),
        (dict(initial_positions=jnp.zeros((8, 2))), "meta\\['num_chains'\\] is 4 in the checkpoint but 8 here"),
        (dict(num_steps=80), "meta\\['num_steps'\\] is 60 in the checkpoint but 80 here"),
        (dict(thin=2), "meta\\['thin'\\] is 1 in the checkpoint but 2 here"),
        (dict(keep="summary"), "meta\\['keep'\\]"),
    ],
)
def test_sample_mismatched_checkpoint_names_the_difference(sample_ckpt, change, match):
    path, _ = sample_ckpt
    args = dict(key=0, initial_positions=X0, num_steps=60)
    args.update(change)
    with pytest.raises(ValueError, match=match):
        fs.sample(args["key"], KERNEL, args["initial_positions"], args["num_steps"], warn=False,
                  thin=change.get("thin", 1), keep=change.get("keep", "all"), checkpoint_path=path,
                  checkpoint_every=20, resume=True)


def test_corrupt_and_foreign_checkpoints(sample_ckpt, tmp_path):
    path, _ = sample_ckpt
    raw = path.read_bytes()
    bad = tmp_path / "trunc.msgpack"
    bad.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match="corrupt or truncated"):
        fs.sample(0, KERNEL, X0, 60, warn=False, checkpoint_path=bad, resume=True)
    bad.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ValueError, match="corrupt|not a flowsamp checkpoint"):
        fs.sample(0, KERNEL, X0, 60, warn=False, checkpoint_path=bad, resume=True)
    wl = tmp_path / "wl.msgpack"
    fs.samplers.wang_landau(0, ISING, num_walkers=2, check_every=10, max_sweeps=20, checkpoint_path=wl)
    with pytest.raises(ValueError, match="meta\\['sampler'\\] is 'wang_landau' in the checkpoint but 'fs.sample' here"):
        fs.sample(0, KERNEL, X0, 60, warn=False, checkpoint_path=wl, resume=True)
    with pytest.raises(ValueError, match="meta\\['sampler'\\] is 'fs.sample' in the checkpoint but 'wang_landau'"):
        fs.samplers.wang_landau(0, ISING, num_walkers=2, check_every=10, max_sweeps=20, checkpoint_path=path,
                                resume=True)
    with pytest.raises(ValueError, match="meta\\['num_walkers'\\] is 2 in the checkpoint but 4 here"):
        fs.samplers.wang_landau(0, ISING, num_walkers=4, check_every=10, max_sweeps=20, checkpoint_path=wl,
                                resume=True)
    with pytest.raises(ValueError, match="meta\\['sampler'\\] is 'wang_landau' in the checkpoint but 'multicanonical'"):
        fs.samplers.multicanonical(0, ISING, num_walkers=2, checkpoint_path=wl, resume=True)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(resume=True), "resume=True needs checkpoint_path"),
        (dict(checkpoint_every=10), "checkpoint_every needs checkpoint_path"),
        (dict(checkpoint_path="/nonexistent-dir/x.msgpack"), "folder of checkpoint_path does not exist"),
        (dict(checkpoint_path="c.msgpack", checkpoint_every=0), "checkpoint_every must be a positive int"),
        (dict(checkpoint_path="c.msgpack", checkpoint_every=3, thin=2), "multiple of 2"),
        (dict(checkpoint_path="c.msgpack", resume="yes"), "resume must be a bool"),
    ],
)
def test_bad_checkpoint_options_raise(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        fs.sample(0, KERNEL, X0, 60, warn=False, **kwargs)


def test_resume_without_a_file_starts_and_writes_it(tmp_path):
    path = tmp_path / "new.msgpack"
    tr = fs.sample(0, KERNEL, X0, 20, warn=False, keep="summary", checkpoint_path=path, resume=True)
    assert path.exists() and fio.read_meta(path)["done"] == 20 and tr.num_steps == 20
    with pytest.raises(ValueError, match="multiple of 10"):
        fs.samplers.wang_landau(0, ISING, check_every=10, checkpoint_path=path, checkpoint_every=15)
    with pytest.raises(ValueError, match="multiple of 20"):
        fs.samplers.multicanonical(0, ISING, chunk=20, checkpoint_path=path, checkpoint_every=30)
