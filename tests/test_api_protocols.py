"""Conformance of every kernel constructor in ``fs.kernels.__all__`` to the kernel contract.

A kernel constructor is a :class:`flowsamp.base.KernelAPI` listed in ``fs.kernels.__all__``
(blackjax's ``GenerateSamplingAPI`` pattern): callable like the constructor, carrying its
module's public names (``init``, ``build_kernel``, ``transition`` where present, State/Info
types). Each needs an entry in ``FACTORIES`` (how to build it on a small model): adding a kernel
module without one fails ``test_every_kernel_has_a_factory``.

Contract (``flowsamp/base.py``), all kernels: ``init(position, <model>, ...)``, constructor
``foo(<model>, ...) -> SamplingAlgorithm(init, step)``, NamedTuple state with ``position`` and
info with ``is_accepted`` and ``acceptance_rate``; ``step`` is key-first and pure.
Continuous kernels (model = ``log_prob_fn``) also report ``info.is_finite``, reject a
non-finite proposal, and run in float64 under x64. Lattice spin kernels take a spin target
object as the model (``init(position, target)``) and integer positions.
"""

import inspect
import pathlib
import pickle
import sys
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import flowsamp as fs
from flowsamp.base import KernelAPI, Proposal, SamplingAlgorithm


class Case(NamedTuple):
    make: Callable[[Any], SamplingAlgorithm]  # model -> kernel
    model: Any  # log_prob_fn (continuous) or a spin target (spin)
    position: Any  # one starting position
    family: str  # "continuous" or "spin"


X0 = np.array([0.3, -0.2, 0.5], np.float32)


def std_normal(x):
    return -0.5 * jnp.sum(x**2)


def wide_gaussian_proposal(dim=3, std=1.5):
    """A stateless N(0, std^2 I) proposal obeying the Proposal contract."""

    def log_prob(x):
        return -0.5 * jnp.sum((x / std) ** 2) - dim * jnp.log(std * jnp.sqrt(2 * jnp.pi)).astype(x.dtype)

    def sample_and_log_prob(key):
        x = std * jax.random.normal(key, (dim,))
        return x, log_prob(x)

    return Proposal(sample_and_log_prob, log_prob)


def _neutra(lp):
    flow = fs.flows.realnvp(3, num_layers=2, hidden=(4,))
    return fs.kernels.neutra(lp, flow, flow.init(jax.random.key(0)), fs.kernels.mala, step_size=0.2)


def _global_local(lp):
    flow = fs.flows.realnvp(3, num_layers=2, hidden=(4,))
    return fs.kernels.global_local(lp, flow, flow.init(jax.random.key(0)), 0.2)


ISING = fs.targets.ising(4, 0.44)
SPINS = np.ones((4, 4), np.int32)

# Extend when adding a kernel.
FACTORIES = {
    "rwmh": Case(lambda lp: fs.kernels.rwmh(lp, scale=0.5), std_normal, X0, "continuous"),
    "mala": Case(lambda lp: fs.kernels.mala(lp, step_size=0.3), std_normal, X0, "continuous"),
    "automala": Case(lambda lp: fs.kernels.automala(lp, step_size=0.3), std_normal, X0, "continuous"),
    "hmc": Case(lambda lp: fs.kernels.hmc(lp, 0.2, 3), std_normal, X0, "continuous"),
    "flow_imh": Case(lambda lp: fs.kernels.flow_imh(lp, wide_gaussian_proposal()), std_normal, X0, "continuous"),
    "isir": Case(lambda lp: fs.kernels.isir(lp, wide_gaussian_proposal(), 4), std_normal, X0, "continuous"),
    "neutra": Case(_neutra, std_normal, X0, "continuous"),
    "nuts": Case(lambda lp: fs.kernels.nuts(lp, step_size=0.3), std_normal, X0, "continuous"),
    "global_local": Case(_global_local, std_normal, X0, "continuous"),
    "delayed_acceptance": Case(
        lambda lp: fs.kernels.delayed_acceptance(lp, lambda x: 0.0 * jnp.sum(x), fs.kernels.rwmh, scale=0.5),
        std_normal,
        X0,
        "continuous",
    ),
    "gibbs": Case(lambda t: fs.kernels.gibbs(t), ISING, SPINS, "spin"),
    "spin_metropolis": Case(lambda t: fs.kernels.spin_metropolis(t), ISING, SPINS, "spin"),
    "wolff": Case(lambda t: fs.kernels.wolff(t), ISING, SPINS, "spin"),
    "autoregressive_imh": Case(
        lambda t: fs.kernels.autoregressive_imh(t, fs.autoregressive.made(4), fs.autoregressive.made(4).init(jax.random.key(0))),
        ISING,
        SPINS,
        "spin",
    ),
}


def discover_kernels():
    found = {}
    for name in fs.kernels.__all__:
        obj = getattr(fs.kernels, name)
        # a bare function returning SamplingAlgorithm would be a constructor that shadows its module
        returns = getattr(obj, "__annotations__", {}).get("return") if inspect.isfunction(obj) else None
        assert returns not in (SamplingAlgorithm, "SamplingAlgorithm"), f"{name} is a bare function: wrap it in KernelAPI"
        if isinstance(obj, KernelAPI):
            assert obj.__name__ == name
            found[name] = sys.modules[obj.__module__]
    return found


KERNELS = discover_kernels()
NAMES = sorted(KERNELS)
CONTINUOUS = [n for n in NAMES if n in FACTORIES and FACTORIES[n].family == "continuous"]


def is_namedtuple(x):
    return isinstance(x, tuple) and hasattr(x, "_fields")


def test_every_kernel_has_a_factory():
    assert {"rwmh", "mala", "hmc", "flow_imh", "isir", "neutra", "gibbs", "global_local"} <= set(KERNELS)
    missing = set(KERNELS) - set(FACTORIES)
    assert not missing, f"add a FACTORIES entry in tests/test_api_protocols.py for {sorted(missing)}"


@pytest.mark.parametrize("name", NAMES)
def test_api_object_carries_its_module(name):
    """``fs.kernels.foo`` is the KernelAPI, its attributes are the module's public names
    (the very objects ``from flowsamp.kernels.foo import ...`` gives), with its State type(s)."""
    api, module = getattr(fs.kernels, name), KERNELS[name]
    assert not inspect.ismodule(api) and callable(api)
    assert getattr(module, name) is api
    for part in module.__all__:
        if part != name:
            assert getattr(api, part) is getattr(module, part), part
    for part in ("init", "build_kernel", "transition"):
        if hasattr(module, part):
            assert getattr(api, part) is getattr(module, part)
    assert any(p.endswith("State") for p in module.__all__), module.__all__
    assert inspect.signature(api) == inspect.signature(api.__wrapped__)
    assert pickle.loads(pickle.dumps(api)) is api


def test_no_importlib_and_one_all_in_the_package():
    root = pathlib.Path(fs.__file__).parent
    for path in root.rglob("*.py"):
        text = path.read_text()
        assert "importlib" not in text, path
        assert "__all__ +=" not in text, path


@pytest.mark.parametrize("name", NAMES)
def test_signatures(name):
    model_arg = "log_prob_fn" if FACTORIES[name].family == "continuous" else "target"
    if hasattr(KERNELS[name], "init"):  # combinators have no module-level init
        init_params = list(inspect.signature(KERNELS[name].init).parameters)
        assert init_params[:2] == ["position", model_arg], init_params
    ctor_params = list(inspect.signature(getattr(fs.kernels, name)).parameters)
    assert ctor_params[0] == model_arg, ctor_params


@pytest.fixture(scope="module", params=NAMES)
def stepped(request):
    case = FACTORIES[request.param]
    alg = case.make(case.model)
    state = alg.init(jnp.asarray(case.position))
    step = jax.jit(alg.step)
    key = jax.random.key(0)
    return request.param, alg, step, state, key, step(key, state)


def test_init_state(stepped):
    name, alg, _, state, _, _ = stepped
    case = FACTORIES[name]
    assert isinstance(alg, SamplingAlgorithm)
    assert is_namedtuple(state) and "position" in state._fields
    api = getattr(fs.kernels, name)
    state_types = [getattr(api, p) for p in api.parts if p.endswith("State")]
    assert type(state) in state_types, (type(state), state_types)
    np.testing.assert_array_equal(state.position, case.position)
    if case.family == "continuous" and "log_prob" in state._fields:
        np.testing.assert_allclose(state.log_prob, case.model(state.position), rtol=1e-6)


def test_step_contract(stepped):
    name, _, _, state, _, (new_state, info) = stepped
    assert type(new_state) is type(state)
    assert jax.tree.structure(new_state) == jax.tree.structure(state)
    for a, b in zip(jax.tree.leaves(new_state), jax.tree.leaves(state)):
        assert a.shape == b.shape and a.dtype == b.dtype
    assert is_namedtuple(info)
    assert info.is_accepted.shape == () and info.is_accepted.dtype == jnp.bool_
    assert info.acceptance_rate.shape == () and 0.0 <= float(info.acceptance_rate) <= 1.0
    if FACTORIES[name].family == "continuous":
        assert info.is_finite.shape == () and info.is_finite.dtype == jnp.bool_


def test_step_is_pure(stepped):
    _, _, step, state, key, out = stepped
    for a, b in zip(jax.tree.leaves(step(key, state)), jax.tree.leaves(out)):
        np.testing.assert_array_equal(a, b)
    other = step(jax.random.key(1), state)
    assert jax.tree.structure(other) == jax.tree.structure(out)


@pytest.mark.parametrize("name", CONTINUOUS)
def test_non_finite_proposal_is_a_counted_rejection(name):
    case = FACTORIES[name]
    x0 = jnp.asarray(case.position)
    nan_off_start = lambda x: jnp.where(jnp.all(x == x0), case.model(x), jnp.nan)  # noqa: E731
    alg = case.make(nan_off_start)
    state = alg.init(x0)
    step = jax.jit(alg.step)
    for i in range(4):
        new_state, info = step(jax.random.key(i), state)
        assert not bool(info.is_accepted) and not bool(info.is_finite)
        assert float(info.acceptance_rate) == 0.0
        np.testing.assert_array_equal(new_state.position, x0)


@pytest.mark.parametrize("name", CONTINUOUS)
def test_float64_and_rbg_keys(name, x64):
    case = FACTORIES[name]
    alg = case.make(case.model)
    state = alg.init(jnp.asarray(case.position, jnp.float64))
    new_state, _ = jax.jit(alg.step)(jax.random.key(0, impl="rbg"), state)
    for leaf in jax.tree.leaves(new_state):
        assert leaf.dtype == jnp.float64
