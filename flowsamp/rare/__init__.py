"""flowsamp.rare: rare events, approximated then corrected.

:func:`committor` learns the committor by the Dirichlet principle on umbrella windows along its
own level sets (Rotskoff, Mitchell & Vanden-Eijnden 2022), windows combined by MBAR
(:mod:`flowsamp.rare.umbrella`).
"""

from flowsamp.rare.committor import CommittorResult, committor
from flowsamp.rare.umbrella import UmbrellaSamples, mbar, run_windows

__all__ = ["CommittorResult", "UmbrellaSamples", "committor", "mbar", "run_windows"]
