"""Bad kernel parameters raise a ValueError naming them; integer positions are cast to float."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import flowsamp as fs


def lp(x):
    return -0.5 * jnp.sum(x**2)


@pytest.mark.parametrize("bad", [-0.1, 0.0, float("nan"), float("inf"), np.array([0.1, -0.2])])
@pytest.mark.parametrize(
    "make,name",
    [
        (lambda v: fs.kernels.mala(lp, v), "step_size"),
        (lambda v: fs.kernels.hmc(lp, v, 3), "step_size"),
        (lambda v: fs.kernels.rwmh(lp, v), "scale"),
        (lambda v: fs.kernels.automala(lp, v), "step_size"),
    ],
    ids=["mala", "hmc", "rwmh", "automala"],
)
def test_bad_step_size_names_it(make, name, bad):
    with pytest.raises(ValueError, match=name):
        make(bad)


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_bad_num_integration_steps(bad):
    with pytest.raises(ValueError, match="num_integration_steps"):
        fs.kernels.hmc(lp, 0.1, bad)


@pytest.mark.parametrize(
    "bad", [np.array([1.0, -1.0]), np.array([[1.0, 2.0], [2.0, 1.0]]), np.array([[1.0, 0.5], [0.0, 1.0]])]
)
def test_bad_inverse_mass(bad):
    with pytest.raises(ValueError, match="inverse_mass"):
        fs.kernels.hmc(lp, 0.1, 3, inverse_mass=bad)
    with pytest.raises(ValueError, match="inverse_mass"):
        fs.kernels.mala(lp, 0.1, inverse_mass=bad)


def test_traced_step_size_is_not_checked():
    """Inside jit the value is unknown: the constructor accepts it (documented)."""

    @jax.jit
    def one(eps):
        alg = fs.kernels.mala(lp, eps)
        return alg.step(jax.random.key(0), alg.init(jnp.ones(2)))[0].position

    assert one(0.1).shape == (2,)


@pytest.mark.parametrize("name", ["mala", "hmc", "rwmh"])
def test_integer_positions_are_cast(name):
    alg = {"mala": fs.kernels.mala(lp, 0.1), "hmc": fs.kernels.hmc(lp, 0.1, 2), "rwmh": fs.kernels.rwmh(lp, 0.1)}[name]
    state = alg.init(jnp.array([1, 2]))
    assert jnp.issubdtype(state.position.dtype, jnp.floating)
    np.testing.assert_array_equal(state.position, [1.0, 2.0])
    new, _ = alg.step(jax.random.key(0), state)
    assert new.position.dtype == state.position.dtype


def test_non_finite_initial_position_raises():
    with pytest.raises(ValueError, match="chain 1"):
        fs.sample(jax.random.key(0), fs.kernels.mala(lp, 0.1), jnp.array([[0.0, 0.0], [jnp.nan, 0.0]]), 2)
