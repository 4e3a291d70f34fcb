r"""Critical slowing down of score training on the 2-D Gaussian free field (seed 004).

Field :math:`\phi` on an ``L x L`` torus with action :math:`\tfrac12\phi^\top K\phi`,
:math:`K = -\Delta + m^2`, :math:`m^2 = c/L^2` (critical scaling). Under the VP noising at a
level :math:`(\alpha, \sigma)`, :math:`\alpha^2 + \sigma^2 = 1`, the noised field is
:math:`N(0, C)`, :math:`C = \alpha^2 K^{-1} + \sigma^2 I`, and the exact score is
:math:`s^*(y) = -C^{-1} y`. A linear score :math:`s(y) = W y` has the *population*
denoising score-matching loss (the expectation over data and noise in closed form)

.. math:: \mathcal L(W) = \mathbb E\,\lVert \sigma W y + \varepsilon\rVert^2
          = \sigma^2 \operatorname{tr}(W C W^\top) + 2\sigma^2\operatorname{tr} W + d .

All three architectures stay circulant under gradient descent from a circulant start, so they
are trained exactly in Fourier space (eigenvalues :math:`c_k` of ``C``; ``d = L^2`` scalars):

* **one-layer** (dense ``W``, the form of the exact solution; ``d^2`` parameters): per mode
  :math:`w_k`, start 0;
* **two-layer** (``W = V U``, dense): per mode :math:`w_k = v_k u_k`, start
  :math:`u_k = \epsilon, v_k = -\epsilon` (a deep linear net);
* **local** (``W`` a ``k x k`` periodic convolution, :class:`flowsamp.flows.vector_fields.LocalScore`,
  ``k^2`` parameters independent of ``L``): :math:`\hat w_k = \sum_{j} a_j e^{-i k\cdot j}`;
  its best loss is above the exact one (a local kernel cannot represent :math:`C^{-1}` exactly),
  so its error is measured against its own optimum (solved in closed form).

Full-batch gradient descent; for each architecture and ``L`` the step size is the best of a
geometric grid (largest stable), and we count the steps until the relative excess loss
:math:`(\mathcal L - \mathcal L^*)/(\mathcal L_0 - \mathcal L^*)` falls below ``--tol``.
Exponents are fitted as ``steps ~ L^z`` (and ``steps ~ a + b log L``).

The seed's claim: quadratic growth (z ~ 2) for the one-layer score; logarithmic for the
two-layer score; the local score gets the acceleration without more parameters.

    python benchmarks/score_slowing_down.py [--sizes 8,16,32,64,128] [--sigma2 0.05]

Writes ``benchmarks/results/score_slowing_down.json`` (+ ``.png``) and prints the table.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)

RESULTS = Path(__file__).parent / "results" / "score_slowing_down.json"
MAX_STEPS = 2_000_000


def spectrum(L, c_mass, sigma2):
    """Eigenvalues c_k of C on the L x L torus (row-major k), and the wave vectors."""
    k = 2 * np.pi * np.arange(L) / L
    kx, ky = np.meshgrid(k, k, indexing="ij")
    lam = c_mass / L**2 + 4 * np.sin(kx / 2) ** 2 + 4 * np.sin(ky / 2) ** 2
    alpha2 = 1 - sigma2
    return alpha2 / lam + sigma2, kx, ky


def _loss_modes(w_hat, c, sigma2):
    # sum over modes of sigma^2 c |w|^2 + 2 sigma^2 Re w (+ d); per-site normalisation
    w_re, w_im = jnp.real(w_hat), jnp.imag(w_hat)  # not jnp.abs: its gradient at 0 is NaN
    return jnp.mean(sigma2 * c * (w_re**2 + w_im**2) + 2 * sigma2 * w_re) + 1.0


def make_arch(name, L, c, kx, ky, ksize):
    if name == "one_layer":
        init = jnp.zeros_like(c)
        to_w = lambda p: p  # noqa: E731
    elif name == "two_layer":
        init = (0.1 * jnp.ones_like(c), -0.1 * jnp.ones_like(c))
        to_w = lambda p: p[0] * p[1]  # noqa: E731
    elif name == "local":
        r = ksize // 2
        offs = np.array([(i, j) for i in range(-r, r + 1) for j in range(-r, r + 1)])
        phase = jnp.exp(-1j * (kx[..., None] * offs[:, 0] + ky[..., None] * offs[:, 1]))
        init = jnp.zeros(len(offs))
        to_w = lambda a: phase @ a  # noqa: E731
    else:
        raise ValueError(name)
    return init, to_w


def optimum(name, c, sigma2, kx, ky, ksize):
    if name in ("one_layer", "two_layer"):
        return float(_loss_modes(-1.0 / c, c, sigma2))
    init, to_w = make_arch("local", None, c, kx, ky, ksize)
    # quadratic in a: solve H a = -g exactly
    f = lambda a: _loss_modes(to_w(a), c, sigma2)  # noqa: E731
    g = jax.grad(f)(init)
    h = jax.hessian(f)(init)
    a = jnp.linalg.solve(h, -g)
    return float(f(a))


def gd_runner(name, c, sigma2, kx, ky, ksize, tol):
    """``run(lr, max_steps) -> (steps, rel_excess)``: gradient descent until the relative excess
    loss is below ``tol`` (one compiled program per architecture and L; lr and cap traced)."""
    init, to_w = make_arch(name, None, c, kx, ky, ksize)
    f = lambda p: _loss_modes(to_w(p), c, sigma2)  # noqa: E731
    l_star = optimum(name, c, sigma2, kx, ky, ksize)
    l0 = float(f(init))
    grad = jax.grad(f)

    @jax.jit
    def run(lr, max_steps):
        def cond(s):
            p, n, err = s
            return (err > tol) & (n < max_steps) & jnp.isfinite(err)

        def body(s):
            p, n, _ = s
            p = jax.tree.map(lambda a, g: a - lr * g, p, grad(p))
            return p, n + 1, (f(p) - l_star) / (l0 - l_star)

        return jax.lax.while_loop(cond, body, (init, 0, jnp.asarray(1.0)))[1:]

    return lambda lr, max_steps: tuple(float(v) for v in run(lr, max_steps))


def best_steps(name, c, sigma2, kx, ky, ksize, tol):
    """Fewest steps over a geometric grid of learning rates (divergent runs excluded)."""
    # grids around each architecture's stability bound: one-layer curvature per mode is
    # 2 sigma^2 c_k / d; two-layer (balanced) ~ 4 sigma^2 / d near its optimum, every mode alike;
    # the local kernel's Hessian is O(sigma^2 k^2) whatever L
    d = c.size
    base = {"one_layer": d / (sigma2 * float(np.max(c))), "two_layer": d / sigma2, "local": 1.0 / sigma2}[name]
    best = (MAX_STEPS, None, None)
    run = gd_runner(name, c, sigma2, kx, ky, ksize, tol)
    for m in range(4, -9, -1):  # large to small: a smaller rate only has to beat the best so far
        lr = base * 2.0**m
        n, err = run(lr, best[0])
        n = int(n)
        if np.isfinite(err) and err <= tol and n < best[0]:
            best = (n, lr, err)
    return best


def plot(out, path):
    """Steps to tolerance against L (log-log) for the three architectures."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, ax = plt.subplots(figsize=(4.5, 3.5))
    for arch, rows in out["table"].items():
        z = out["fits"][arch]["power_exponent"]
        ax.loglog([r["L"] for r in rows], [r["steps"] for r in rows], "o-", label=f"{arch} (L^{z:.2f})")
    ax.set_xlabel("L (m^2 = c / L^2)")
    ax.set_ylabel("GD steps to rel. excess loss < tol")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--plot-only", action="store_true", help="replot the saved JSON")
    ap.add_argument("--sizes", default="8,16,32,64,128")
    ap.add_argument("--sigma2", type=float, default=0.05)
    ap.add_argument("--mass", type=float, default=1.0, help="c in m^2 = c / L^2")
    ap.add_argument("--tol", type=float, default=1e-3)
    ap.add_argument("--ksize", type=int, default=5)
    args = ap.parse_args()
    if args.plot_only:
        plot(json.loads(RESULTS.read_text()), RESULTS.with_suffix(".png"))
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    table = {a: [] for a in ("one_layer", "two_layer", "local")}
    for L in sizes:
        c, kx, ky = spectrum(L, args.mass, args.sigma2)
        c = jnp.asarray(c)
        row = [f"L={L:4d} kappa(C)={float(c.max() / c.min()):9.1f}"]
        for arch in table:
            n, lr, err = best_steps(arch, c, args.sigma2, kx, ky, args.ksize, args.tol)
            table[arch].append({"L": L, "steps": n, "lr": lr, "rel_excess": err,
                                "kappa": float(c.max() / c.min())})
            row.append(f"{arch} {n:8d}")
        print("  ".join(row), flush=True)
    fits = {}
    logL = np.log(sizes)
    for arch, rows in table.items():
        steps = np.array([r["steps"] for r in rows], float)
        z = float(np.polyfit(logL, np.log(steps), 1)[0])
        b = float(np.polyfit(logL, steps, 1)[0])
        fits[arch] = {"power_exponent": z, "log_slope": b}
        print(f"{arch:10s}: steps ~ L^{z:.2f}; steps ~ a + {b:.1f} ln L")
    claim_quadratic = 1.6 <= fits["one_layer"]["power_exponent"] <= 2.4
    claim_two = fits["two_layer"]["power_exponent"] < 0.5
    claim_local = fits["local"]["power_exponent"] < 0.5
    print(f"one-layer quadratic: {claim_quadratic}; two-layer sub-power (log): {claim_two}; "
          f"local sub-power: {claim_local}")
    out = {"args": vars(args), "table": table, "fits": fits,
           "claims": {"one_layer_quadratic": claim_quadratic, "two_layer_logarithmic": claim_two,
                      "local_logarithmic": claim_local}}
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=1))
    plot(out, RESULTS.with_suffix(".png"))


if __name__ == "__main__":
    main()
