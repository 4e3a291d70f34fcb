"""False alarms and detection of the afm verdict's lost-region check on exact synthetic draws.

A two-mode Gaussian mixture in ``d`` dimensions, small mode of weight ``w`` 12 apart; 2048
"particles" are iid draws of the mixture; "production" is 32 x 128 iid draws of the whole mixture
with a flow 15 % too narrow and with a wrong small weight (H0: must not be flagged), or of the heavy
mode only with the heavy mode's Gaussian as the flow (lost: should be flagged). Runs
:func:`flowsamp.samplers._flow_mcmc_coverage.coverage_verdict` with and without labels.

    python benchmarks/lost_modes_synthetic.py 10 2,6,16,32
"""
import sys, math, numpy as np
from scipy.special import logsumexp
from flowsamp.samplers._flow_mcmc_coverage import coverage_verdict
def experiment(d, w, lost, seed, labels, n_part=2048, sd_q=0.85):
    rng = np.random.default_rng(seed)
    means = np.zeros((2, d)); means[0, 0] = 12.0
    W = np.array([w, 1 - w])
    def lnorm(x, m, s=1.0): return -0.5 * np.sum(((x - m) / s) ** 2, -1) - d * math.log(s) - 0.5 * d * math.log(2 * math.pi)
    def log_p(x): return logsumexp(np.stack([lnorm(x, m) for m in means]) + np.log(W)[:, None], axis=0)
    def draws(n, W=W):
        k = rng.choice(2, n, p=W); return means[k] + rng.standard_normal((n, d))
    parts = draws(n_part)
    if lost:
        prod = (means[1] + rng.standard_normal((32 * 128, d))).reshape(32, 128, d); log_q = lambda x: lnorm(x, means[1])
    else:
        prod = draws(32 * 128).reshape(32, 128, d)
        log_q = lambda x: logsumexp(np.stack([lnorm(x, m, sd_q) for m in means]) + np.log([min(1.5 * w, .5), 1 - min(1.5 * w, .5)])[:, None], axis=0)
    def score(x): lp = log_p(x); return lp, lp - log_q(x)
    lab = lambda x: (np.linalg.norm(x - means[0], axis=-1) < np.linalg.norm(x - means[1], axis=-1)).astype(np.int64) ^ 1
    kw = dict(labels=lab, production_labels=lab(prod), num_modes=2) if labels else {}
    diag, probs = coverage_verdict(parts, 0.0, prod, score, seed=seed, min_ess_bulk=32 * 128, starts=means[0] + rng.standard_normal((8, d)), **kw)
    return len(probs) > 0
reps = int(sys.argv[1])
print("d   w      labels  H0 false alarms   lost: detected")
for d in [int(a) for a in sys.argv[2].split(",")]:
    for w in (0.005, 0.01, 0.02, 0.05):
        for labels in (False, True):
            fa = sum(experiment(d, w, False, s, labels) for s in range(reps))
            det = sum(experiment(d, w, True, 1000 + s, labels) for s in range(reps))
            print(f"{d:<3} {w:<6} {str(labels):7} {fa}/{reps}              {det}/{reps}", flush=True)
