"""Approximate, then correct: an MLP surrogate learned on the fly, then reweighting to the true density.

1. ``fs.samplers.surrogate_mcmc``: delayed-acceptance MCMC on an "expensive" 2-D banana (its
   log-density runs a 500-step inner loop); every expensive evaluation trains the MLP surrogate
   between rounds, and the production run (frozen surrogate) is exact.
2. ``fs.rare.reweight``: draws made under the learned surrogate alone (cheap chains, last state of
   each) are reweighted to the true density, with SE, ESS/N, Pareto k-hat and a verdict.

    python scripts/surrogate_mcmc_example.py
"""

import jax
import jax.numpy as jnp
import numpy as np

import flowsamp as fs


def expensive_banana(x):
    # x0 ~ N(0, 4), x1 | x0 ~ N(x0^2 / 4, 1); the loop stands for an expensive model (500 steps of y <- y/2 + 1)
    one = jax.lax.fori_loop(0, 500, lambda i, y: 0.5 * y + 1.0, jnp.zeros((), x.dtype)) / 2.0  # = 1.0
    return -0.5 * (x[0] ** 2 / 4.0 + (x[1] - 0.25 * one * x[0] ** 2) ** 2)


x0 = jax.random.normal(jax.random.key(1), (8, 2))
res = fs.samplers.surrogate_mcmc(jax.random.key(0), expensive_banana, x0, kernel_params={"scale": 1.5},
                                 num_rounds=3, steps_per_round=250, num_production_steps=2000)
print("round  expensive evals  stage-1 acc  stage-2 acc  held-out error")
for r in range(len(res.expensive_evaluations)):
    name = "prod" if r == len(res.expensive_evaluations) - 1 else str(r)
    print(f"{name:>5}  {res.expensive_evaluations[r]:15d}  {res.first_stage_acceptance[r]:11.3f}  "
          f"{res.second_stage_acceptance[r]:11.3f}  {res.heldout_error[r]:14.3f}")
print("production mean", res.samples.mean((0, 1)).round(3), "(exact 0, 1); converged", res.converged, res.problems)

# cheap sampling under the learned surrogate only: 2000 independent RWMH chains, keep the last state
learned = lambda x: res.surrogate.log_prob(res.surrogate_params, x)  # noqa: E731
kernel = fs.kernels.rwmh(learned, scale=1.5)
trace = fs.sample(jax.random.key(2), kernel, jax.random.normal(jax.random.key(3), (2000, 2)), 400)
draws = np.asarray(trace.positions[:, -1])
rw = fs.rare.reweight(draws, expensive_banana, learned, lambda x: jnp.concatenate([x, x**2]))
print("reweighted E[x, x^2]", rw.mean.round(3), "+-", rw.se.round(3), "(exact 0, 1, 4, 4)")
print(f"ESS/N {rw.ess_fraction:.3f}, k-hat {rw.k_hat:.2f}, converged {rw.converged}", rw.problems)
