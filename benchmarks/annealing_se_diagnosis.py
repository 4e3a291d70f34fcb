"""Why the islands' ln Z SE under-covers on many-well 32 (N=2048, 8 islands of 256).

Reads ``results/annealing_calibration_many_well32_n2048.json`` (20 repeats of
``fs.samplers.smc`` with the islands' ln Z_m) and tests the three candidate causes:

* (b) islands not independent: one-way ANOVA of the 20 x 8 island ln Z (between-run variance of
  the run means against the within-run variance / 8; F_{19,140});
* (c) heavy tails of Z_m: skewness / excess kurtosis of the pooled 160 ln Z_m (a log-normal Z_m
  has normal ln Z_m: both 0, SE sqrt(6/160), sqrt(24/160)) and whether their mean is -sigma^2/2
  (E Z_m = Z);
* (a) too few degrees of freedom: runs of M islands bootstrapped from the pooled empirical law
  against a log-normal law of the same sd, M = 8 / 16 / 32 (if the dof were the cause, sd/SE would
  go to 1 as M grows on the empirical law as it does on the log-normal one).

Writes ``results/annealing_se_diagnosis_many_well32.json``. Cheap (seconds), no sampling.
"""

from __future__ import annotations

import json
import math
import os
import sys

import numpy as np
from scipy import stats

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from flowsamp.samplers._smc_evidence import island_log_evidence  # noqa: E402


def main():
    src = os.path.join(HERE, "results", "annealing_calibration_many_well32_n2048.json")
    r = json.load(open(src))["results"][0]
    ex = r["exact_log_Z"]
    isl = np.array([u["island_log_Z"] for u in r["runs"]]) - ex
    lz = np.array([u["log_Z"] for u in r["runs"]]) - ex
    se = np.array([u["log_Z_se"] for u in r["runs"]])
    runs, m = isl.shape
    within = isl.var(axis=1, ddof=1).mean()
    f = m * isl.mean(axis=1).var(ddof=1) / within
    pooled = isl.ravel()
    ratio = lz.std(ddof=1) / se.mean()
    ratio_log_sd = math.sqrt(1 / (2 * (runs - 1)) + np.var(se) / (runs * se.mean() ** 2))
    out = {
        "source": os.path.basename(src), "runs": runs, "islands": m,
        "sd_over_mean_se": ratio, "sd_over_mean_se_4sigma_band": [ratio * math.exp(-4 * ratio_log_sd),
                                                                   ratio * math.exp(4 * ratio_log_sd)],
        "sd_over_mean_se_rel_sd": ratio_log_sd,
        "anova_F": f, "anova_p": float(stats.f.sf(f, runs - 1, runs * (m - 1))),
        "pooled_island_mean": float(pooled.mean()), "minus_half_var": float(-pooled.var(ddof=1) / 2),
        "pooled_island_sd": float(pooled.std(ddof=1)), "within_run_sd": float(math.sqrt(within)),
        "skew": float(stats.skew(pooled)), "skew_se": math.sqrt(6 / pooled.size),
        "excess_kurtosis": float(stats.kurtosis(pooled)), "kurtosis_se": math.sqrt(24 / pooled.size),
        "bootstrap": [],
    }
    rng = np.random.default_rng(0)
    laws = {"empirical": pooled,
            "lognormal": rng.normal(-pooled.var(ddof=1) / 2, pooled.std(ddof=1), 200_000)}
    for name, pool in laws.items():
        truth = float(np.log(np.mean(np.exp(pool))))
        for mm in (8, 16, 32):
            x = rng.choice(pool, (20_000, mm))
            est, s = island_log_evidence(x)
            z = (est - truth) / s
            flagged = x.std(axis=1, ddof=1) > 1.0
            out["bootstrap"].append({"law": name, "islands": mm, "sd_over_mean_se": float(est.std() / s.mean()),
                                     "p_abs_z_gt_4": float(np.mean(np.abs(z) > 4)),
                                     "p_silent": float(np.mean((np.abs(z) > 4) & ~flagged)),
                                     "p_flagged_sd_gt_1": float(np.mean(flagged))})
    path = os.path.join(HERE, "results", "annealing_se_diagnosis_many_well32.json")
    with open(path, "w") as fh:
        json.dump(out, fh, indent=1)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
