"""fs.io checkpoints: round trips, atomic write, clear errors for corrupt/mismatched files."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import serialization

from flowsamp import io

PARAMS = {
    "base": {"loc": jnp.arange(3.0), "log_scale": jnp.zeros(3)},
    "layers": [{"w": jnp.ones((3, 4)), "b": jnp.zeros(4)}, {"w": 2 * jnp.ones((4, 3))}],
    "count": jnp.int32(7),
}


def _equal(a, b):
    return all(
        x.dtype == y.dtype and x.shape == y.shape and bool(jnp.all(x == y))
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))
    ) and jax.tree.structure(a) == jax.tree.structure(b)


def test_round_trip_params_and_optax_state(tmp_path):
    state = optax.adam(1e-3).init(PARAMS)
    path = tmp_path / "ckpt.msgpack"
    io.save(path, (PARAMS, state))
    like = jax.tree.map(jnp.zeros_like, (PARAMS, state))
    restored = io.load(path, like)
    assert _equal(restored, (PARAMS, state))
    assert isinstance(restored[1][0], type(state[0]))  # NamedTuple type kept
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.msgpack"]  # no temp file left


def test_round_trip_float64(tmp_path):
    with jax.enable_x64(True):
        p = {"x": jnp.linspace(0, 1, 5, dtype=jnp.float64)}
        io.save(tmp_path / "p.msgpack", p)
        r = io.load(tmp_path / "p.msgpack", p)
        assert r["x"].dtype == jnp.float64 and np.array_equal(r["x"], p["x"])


def test_file_is_not_pickle(tmp_path):
    io.save(tmp_path / "p.msgpack", PARAMS)
    raw = (tmp_path / "p.msgpack").read_bytes()
    assert not raw.startswith(b"\x80")  # pickle protocol header
    assert serialization.msgpack_restore(raw)["format"] == "flowsamp-checkpoint"


@pytest.mark.parametrize(
    "like, match",
    [
        ({**PARAMS, "extra": jnp.zeros(1)}, "missing entries"),
        ({k: v for k, v in PARAMS.items() if k != "count"}, "unexpected entries"),
        ({**PARAMS, "count": jnp.zeros((2,), jnp.int32)}, "expected array\\(2,\\)"),
        ({**PARAMS, "count": jnp.float32(0)}, "float32"),
    ],
)
def test_mismatch_raises_clear_error(tmp_path, like, match):
    io.save(tmp_path / "p.msgpack", PARAMS)
    with pytest.raises(ValueError, match=match):
        io.load(tmp_path / "p.msgpack", like)


def test_corrupt_and_foreign_files_raise(tmp_path):
    io.save(tmp_path / "p.msgpack", PARAMS)
    raw = (tmp_path / "p.msgpack").read_bytes()
    (tmp_path / "trunc.msgpack").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match="corrupt or truncated"):
        io.load(tmp_path / "trunc.msgpack", PARAMS)
    (tmp_path / "foreign.msgpack").write_bytes(serialization.to_bytes(PARAMS))
    with pytest.raises(ValueError, match="not a flowsamp checkpoint"):
        io.load(tmp_path / "foreign.msgpack", PARAMS)
    (tmp_path / "garbage.msgpack").write_bytes(b"\xc1\xff\x00garbage")
    with pytest.raises(ValueError):
        io.load(tmp_path / "garbage.msgpack", PARAMS)
    with pytest.raises(FileNotFoundError):
        io.load(tmp_path / "absent.msgpack", PARAMS)


def test_typed_key_rejected(tmp_path):
    with pytest.raises(TypeError, match="key_data"):
        io.save(tmp_path / "k.msgpack", {"key": jax.random.key(0)})


META = {"sampler": "fs.sample", "num_chains": 4, "thin": 2, "step_size": 0.1, "shape": (4, 3),
        "target_ess": None, "resume": True}


def test_meta_round_trip_and_match(tmp_path):
    path = tmp_path / "m.msgpack"
    io.save(path, PARAMS, meta=META)
    assert io.read_meta(path) == {**META, "shape": [4, 3]}
    assert _equal(io.load(path, PARAMS, meta=META), PARAMS)
    assert _equal(io.load(path, PARAMS, meta={"sampler": "fs.sample"}), PARAMS)  # subset is enough
    assert _equal(io.load(path, PARAMS), PARAMS)  # no meta: not checked
    io.save(tmp_path / "plain.msgpack", PARAMS)
    assert io.read_meta(tmp_path / "plain.msgpack") == {}


@pytest.mark.parametrize(
    "key, value, match",
    [
        ("sampler", "wang_landau", "meta\\['sampler'\\] is 'fs.sample' in the checkpoint but 'wang_landau' here"),
        ("num_chains", 8, "meta\\['num_chains'\\] is 4 in the checkpoint but 8 here"),
        ("shape", (4, 4), "meta\\['shape'\\] is \\[4, 3\\] in the checkpoint but \\[4, 4\\] here"),
        ("resume", 1, "meta\\['resume'\\] is True in the checkpoint but 1 here"),
        ("target_ess", 100.0, "is None in the checkpoint but 100.0 here"),
        ("absent", 1, "written without meta\\['absent'\\]"),
    ],
)
def test_meta_mismatch_names_key_and_values(tmp_path, key, value, match):
    io.save(tmp_path / "m.msgpack", PARAMS, meta=META)
    with pytest.raises(ValueError, match=match):
        io.load(tmp_path / "m.msgpack", PARAMS, meta={**META, key: value})


def test_meta_int_float_equal_and_bad_meta_types(tmp_path):
    io.save(tmp_path / "m.msgpack", PARAMS, meta={"n": 2, "x": np.float32(0.5)})
    io.load(tmp_path / "m.msgpack", PARAMS, meta={"n": 2.0, "x": 0.5})
    with pytest.raises(TypeError, match="meta\\['f'\\] must be a plain value"):
        io.save(tmp_path / "b.msgpack", PARAMS, meta={"f": jnp.zeros(2)})
    with pytest.raises(TypeError, match="meta must be a dict"):
        io.load(tmp_path / "m.msgpack", PARAMS, meta=["x"])
    (tmp_path / "c.msgpack").write_bytes(b"\x93\x01")
    with pytest.raises(ValueError, match="not a flowsamp checkpoint|corrupt"):
        io.read_meta(tmp_path / "c.msgpack")


def test_numpy_template_leaves_stay_numpy_float64(tmp_path):
    tree = {"curve": np.linspace(0, 1, 7) / 3.0, "x": jnp.ones(2)}
    io.save(tmp_path / "n.msgpack", tree)
    r = io.load(tmp_path / "n.msgpack", tree)
    assert isinstance(r["curve"], np.ndarray) and r["curve"].dtype == np.float64
    assert np.array_equal(r["curve"], tree["curve"]) and isinstance(r["x"], jax.Array)
