"""RealNVP: affine coupling flow with alternating or checkerboard masks (lean coupling)."""

from __future__ import annotations

from typing import Callable, Sequence

from flowsamp.base import Flow
from flowsamp.flows.bases import Base, standard_normal
from flowsamp.flows.coupling import check_common, coupling_layer, partitions
from flowsamp.flows.layers import compose, global_affine
from flowsamp.flows.nets import get_activation
from flowsamp.flows.transforms import affine as affine_transform
from flowsamp.types import Array


def realnvp(
    dim: int,
    num_layers: int = 4,
    hidden: Sequence[int] = (64, 64),
    *,
    mask: str = "alternating",
    lattice_shape: Sequence[int] | None = None,
    conditioner: str = "mlp",
    base: Base | None = None,
    affine: bool = False,
    max_log_scale: float = 5.0,
    activation: str | Callable[[Array], Array] = "relu",
) -> Flow:
    r"""RealNVP (Dinh et al. 2017): ``num_layers`` affine couplings on a base distribution.

    Layer k keeps :math:`x_A` and maps :math:`y_B = x_B\,e^{s(x_A)} + t(x_A)`, with the
    log-scale softly bounded, :math:`|s| < ` ``max_log_scale``. Partitions
    (``mask``): ``"alternating"`` first/last half swapping every layer; ``"checkerboard"``
    the even/odd sites of a row-major flattened lattice ``lattice_shape`` (e.g. ``(L, L)``
    for 2-D phi^4; a 1-D chain when omitted). ``conditioner="mlp"`` is a dense net on
    :math:`x_A`; ``"conv"`` a convolutional net with circular padding on the whole lattice
    (transformed sites zeroed), for lattice fields. For ``dim == 1`` each layer is an
    unconditional affine map with learned shift and scale. ``affine=True`` appends a global
    learnable shift/scale on the data side.

    .. math:: \log q_\theta(x) = \log p_0(z) - \sum_k \sum_{i\in B_k} s_{k,i} .

    Zero last layers make the flow exactly its base at initialisation.

    Returns
    -------
    Flow
        ``init / sample_and_log_prob / log_prob / forward / inverse``, jitted.

    References
    ----------
    Dinh, Sohl-Dickstein & Bengio, Density estimation using Real NVP, arXiv:1605.08803;
    Albergo, Kanwar & Shanahan, Flow-based generative models for lattice field theory,
    arXiv:1904.12072.
    """
    dim, num_layers, hidden = check_common(dim, num_layers, hidden, base, conditioner, lattice_shape)
    base = standard_normal(dim) if base is None else base
    act = get_activation(activation)
    transform = affine_transform(max_log_scale)
    layers = [
        coupling_layer(dim, cond, trans, transform, hidden, conditioner, lattice_shape, act)
        for cond, trans in partitions(dim, num_layers, mask, lattice_shape)
    ]
    if affine:
        layers.append(global_affine(dim))
    return compose(base, layers)
