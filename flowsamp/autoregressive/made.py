r"""MADE for lattice spins, with O(N)-pass cached ancestral sampling.

Sites are read in raster order, ``x_1..x_N`` one-hot over q states.  Hidden layers are
``N - 1`` blocks of ``width`` units, block ``b = 1..N-1`` of every layer seeing only
``x_{\le b}`` (MADE degrees, Germain et al. 2015, arXiv:1502.03509, with the units sorted by
degree):

.. math::

    h^{(1)}_b = \sigma\Big(c^{(1)}_b + \sum_{j \le b} W^{(1)}_{jb}\, x_j\Big), \qquad
    h^{(l)}_b = h^{(l-1)}_b + \sigma\Big(c^{(l)}_b + \sum_{b' \le b} W^{(l)}_{b'b}\, h^{(l-1)}_{b'}\Big),

    \ell_i = c_i + \sum_{b < i} V_{bi}\, h^{(D)}_b + \sum_{j < i} U_{ji}\, x_j
    \quad\text{(logits of } x_i\text{; the } U \text{ term is a masked linear skip).}

Because block ``b`` depends on ``x_{\le b}`` only, sampling computes block ``b`` of every layer
once, right after ``x_b`` is drawn: the whole draw costs one forward pass (O(N) network work
per site-block), not N passes.  ``width`` follows VAN's ``net_width`` (units per site).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from flowsamp.autoregressive.base import AutoregressiveNet, check_spin_values, make_net
from flowsamp.types import Array, PRNGKey

__all__ = ["made"]


def _masks(N: int) -> dict[str, np.ndarray]:
    site = np.arange(N)          # input / output site j, i (0-based)
    block = np.arange(N - 1)     # hidden block b sees sites 0..b
    return {
        "in": (site[:, None] <= block[None, :]),        # (N, B)
        "hid": (block[:, None] <= block[None, :]),      # (B, B)
        "out": (block[:, None] < site[None, :]),        # (B, N)
        "skip": (site[:, None] < site[None, :]),        # (N, N)
    }


def made(
    L: int,
    spin_values: Any = (-1, 1),
    *,
    width: int = 4,
    depth: int = 2,
    activation=jax.nn.silu,
) -> AutoregressiveNet:
    """Masked autoregressive network over the ``L x L`` spins (VAN's MADE).

    Parameters
    ----------
    L : int
        Linear lattice size (N = L**2 sites).
    spin_values : sequence of int
        Allowed spin values, ascending: ``(-1, 1)`` for Ising, ``range(q)`` for Potts
        (``target.spin_values``).
    width : int
        Hidden units per site-block (hidden layers have ``width * (N - 1)`` units).
    depth : int
        Number of hidden layers (0: masked linear logits only).
    activation : callable
        Hidden nonlinearity.

    Returns
    -------
    AutoregressiveNet
        With exact ``log_prob`` and cached ``sample_and_log_prob``.
    """
    L, values = check_spin_values(L, spin_values)
    for name, v in (("width", width), ("depth", depth)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
            raise ValueError(f"{name} must be an int >= 0, got {v!r}")
    if depth > 0 and width < 1:
        raise ValueError("width must be >= 1 when depth > 0")
    N, q, B, w = L * L, int(values.size), L * L - 1, int(width)
    m = {k: jnp.asarray(v) for k, v in _masks(N).items()}

    def init(key: PRNGKey) -> dict:
        dtype = jnp.result_type(float)
        keys = jax.random.split(key, depth + 1)
        p = {
            "skip": jnp.zeros((N, q, N, q), dtype),
            "bias_out": jnp.zeros((N, q), dtype),
        }
        if depth > 0:
            p["w_in"] = jax.random.normal(keys[0], (N, q, B, w), dtype) / np.sqrt(max(N / 2, 1.0))
            p["b_in"] = jnp.zeros((B, w), dtype)
            p["w_hid"] = [
                jax.random.normal(keys[k], (B, w, B, w), dtype) / np.sqrt(max(B * w / 2, 1.0))
                for k in range(1, depth)
            ]
            p["b_hid"] = [jnp.zeros((B, w), dtype) for _ in range(1, depth)]
            p["w_out"] = jnp.zeros((B, w, N, q), dtype)
        return p

    def masked(p):
        mm = {"skip": p["skip"] * m["skip"][:, None, :, None]}
        if depth > 0:
            mm["w_in"] = p["w_in"] * m["in"][:, None, :, None]
            mm["w_hid"] = [W * m["hid"][:, None, :, None] for W in p["w_hid"]]
            mm["w_out"] = p["w_out"] * m["out"][:, None, :, None]
        return mm

    def logits(params: dict, x: Array) -> Array:
        mm = masked(params)
        oh = jax.nn.one_hot(x, q, dtype=params["bias_out"].dtype)
        out = jnp.einsum("njq,jqip->nip", oh, mm["skip"]) + params["bias_out"]
        if depth > 0:
            h = activation(jnp.einsum("njq,jqbw->nbw", oh, mm["w_in"]) + params["b_in"])
            for W, c in zip(mm["w_hid"], params["b_hid"]):
                h = h + activation(jnp.einsum("nbw,bwcv->ncv", h, W) + c)
            out = out + jnp.einsum("nbw,bwiq->niq", h, mm["w_out"])
        return out

    def sample_index(params: dict, key: PRNGKey, n: int) -> tuple[Array, Array]:
        mm = masked(params)
        dtype = params["bias_out"].dtype
        gumbel = jax.random.gumbel(key, (N, n, q), dtype)
        oh0 = jnp.zeros((n, N, q), dtype)
        hs0 = [jnp.zeros((n, B, w), dtype) for _ in range(depth)]

        def step(carry, i):
            oh, hs, log_q = carry
            li = jnp.einsum("njq,jqp->np", oh, mm["skip"][:, :, i]) + params["bias_out"][i]
            if depth > 0:
                li = li + jnp.einsum("nbw,bwq->nq", hs[-1], mm["w_out"][:, :, i])
            li = jax.nn.log_softmax(li, axis=-1)
            xi = jnp.argmax(li + gumbel[i], axis=-1)
            log_q = log_q + jnp.take_along_axis(li, xi[:, None], axis=-1)[:, 0]
            oh = oh.at[:, i].set(jax.nn.one_hot(xi, q, dtype=dtype))
            if depth > 0:  # block b = i is now computable in every layer
                b = jnp.minimum(i, B - 1)
                live = i < B
                hb = activation(jnp.einsum("njq,jqw->nw", oh, mm["w_in"][:, :, b]) + params["b_in"][b])
                new = [hs[0].at[:, b].set(jnp.where(live, hb, hs[0][:, b]))]
                for W, c, h_old in zip(mm["w_hid"], params["b_hid"], hs[1:]):
                    hb = hb + activation(jnp.einsum("ncw,cwv->nv", new[-1], W[:, :, b]) + c[b])
                    new.append(h_old.at[:, b].set(jnp.where(live, hb, h_old[:, b])))
                hs = new
            return (oh, hs, log_q), xi.astype(jnp.int32)

        (_, _, log_q), xs = jax.lax.scan(step, (oh0, hs0, jnp.zeros(n, dtype)), jnp.arange(N))
        return xs.T, log_q

    return make_net(init, logits, sample_index, L, values, f"made(L={L}, q={q}, width={w}, depth={depth})")
