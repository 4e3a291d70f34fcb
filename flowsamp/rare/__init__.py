"""flowsamp.rare: rare events, approximated then corrected.

:func:`committor` learns the committor by the Dirichlet principle on umbrella windows along its
own level sets (Rotskoff, Mitchell & Vanden-Eijnden 2022): a ladder on logit q, neighbouring windows
exchanging configurations, combined by MBAR (:mod:`flowsamp.rare.umbrella`). :func:`widom` estimates the excess chemical potential by test-particle
insertion, plain or with an exact audit pre-filter (learned or classical) reweighted by 1/a.
:func:`reweight` corrects draws of a learned potential to the true one by importance weights.
"""

from flowsamp.rare.committor import CommittorResult, committor
from flowsamp.rare.reweight import ReweightResult, reweight
from flowsamp.rare.umbrella import UmbrellaSamples, mbar, run_windows
from flowsamp.rare.widom import WidomResult, particle_sweeps, widom

__all__ = ["CommittorResult", "ReweightResult", "UmbrellaSamples", "WidomResult", "committor", "mbar", "particle_sweeps",
           "reweight", "run_windows", "widom"]
