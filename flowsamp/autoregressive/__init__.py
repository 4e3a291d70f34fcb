"""flowsamp.autoregressive: exact autoregressive networks q_theta(s) over lattice spins (VAN)."""

from flowsamp.autoregressive.base import AutoregressiveNet, log_prob_from_logits, to_index, to_spins
from flowsamp.autoregressive.made import made
from flowsamp.autoregressive.pixelcnn import pixelcnn
from flowsamp.autoregressive.symmetrize import group_permutations, symmetrize

__all__ = [
    "AutoregressiveNet",
    "group_permutations",
    "log_prob_from_logits",
    "made",
    "pixelcnn",
    "symmetrize",
    "to_index",
    "to_spins",
]
