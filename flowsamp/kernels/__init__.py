"""flowsamp.kernels: Markov transition kernels, blackjax style.

Each kernel module ``foo`` has ``init(position, log_prob_fn)``, ``build_kernel()`` (and, for
the gradient and flow kernels, a ``transition`` taking pre-drawn random numbers), and the public
name ``foo`` is a :class:`flowsamp.base.KernelAPI`: calling it,
``foo(log_prob_fn, **params) -> SamplingAlgorithm(init, step)``, builds the kernel, and it
carries the module's parts (``foo.init``, ``foo.build_kernel``, ``foo.transition``,
``foo.FooState`` ...). ``from flowsamp.kernels.foo import transition`` names the same function.
Every ``KernelAPI`` listed in ``__all__`` is covered by the conformance test
``tests/test_api_protocols.py``. Adaptation (dual averaging, Robbins-Monro, the target
acceptance table) lives in :mod:`flowsamp.kernels.adaptation`; Stan's windowed warm-up of the
step size and mass matrix is :func:`window_adaptation` (:mod:`flowsamp.kernels.windowed`).
"""

from flowsamp.kernels import integrators
from flowsamp.kernels._spins import SpinInfo, SpinState
from flowsamp.kernels.adaptation import (
    TARGET_ACCEPTANCE,
    AdaptationResult,
    dual_averaging,
    dual_averaging_adaptation,
    find_step_size,
    robbins_monro,
)
from flowsamp.kernels.automala import AutoMALAInfo, automala
from flowsamp.kernels.autoregressive_imh import autoregressive_imh
from flowsamp.kernels.delayed_acceptance import DelayedAcceptanceInfo, DelayedAcceptanceState, delayed_acceptance
from flowsamp.kernels.flow_imh import FlowIMHInfo, FlowIMHState, flow_imh
from flowsamp.kernels.gibbs import SimultaneousGibbsWarning, gibbs
from flowsamp.kernels.global_local import GlobalLocalInfo, GlobalLocalState, global_local
from flowsamp.kernels.hmc import HMCInfo, HMCState, hmc
from flowsamp.kernels.isir import ISIRInfo, ISIRState, isir
from flowsamp.kernels.mala import MALAInfo, MALAState, mala
from flowsamp.kernels.neutra import NeuTraInfo, NeuTraState, neutra
from flowsamp.kernels.nuts import NUTSInfo, NUTSState, nuts
from flowsamp.kernels.rwmh import RWMHInfo, RWMHState, rwmh
from flowsamp.kernels.spin_metropolis import spin_metropolis
from flowsamp.kernels.windowed import WindowAdaptation, window_adaptation
from flowsamp.kernels.wolff import wolff

__all__ = [
    "TARGET_ACCEPTANCE",
    "AdaptationResult",
    "AutoMALAInfo",
    "FlowIMHInfo",
    "FlowIMHState",
    "GlobalLocalInfo",
    "GlobalLocalState",
    "HMCInfo",
    "HMCState",
    "ISIRInfo",
    "ISIRState",
    "MALAInfo",
    "MALAState",
    "NeuTraInfo",
    "NeuTraState",
    "NUTSInfo",
    "NUTSState",
    "RWMHInfo",
    "RWMHState",
    "SimultaneousGibbsWarning",
    "SpinInfo",
    "SpinState",
    "WindowAdaptation",
    "DelayedAcceptanceInfo",
    "automala",
    "autoregressive_imh",
    "DelayedAcceptanceState",
    "delayed_acceptance",
    "dual_averaging",
    "dual_averaging_adaptation",
    "find_step_size",
    "flow_imh",
    "gibbs",
    "global_local",
    "hmc",
    "integrators",
    "isir",
    "mala",
    "neutra",
    "nuts",
    "robbins_monro",
    "rwmh",
    "spin_metropolis",
    "window_adaptation",
    "wolff",
]
