"""Beale's exact Ising g(E) (any even L) against the transfer-matrix counts of fs.targets.ising."""

import numpy as np
import pytest

import flowsamp as fs

pytest.importorskip("mpmath")
from flowsamp.targets.beale import beale_dos, beale_log_dos  # noqa: E402


@pytest.mark.parametrize("L", [4, 6, 8])
def test_beale_equals_transfer_matrix(L):
    e, g, worst = beale_dos(L)
    ee, gg = fs.targets.ising(L=L, beta=0.0).exact_dos()
    assert np.array_equal(e, ee) and g == [int(c) for c in gg] and worst < 1e-6


def test_beale_log_dos_and_bad_input():
    e, lg = beale_log_dos(4)
    assert abs(lg[0] - np.log(2)) < 1e-12 and e.shape == lg.shape
    with pytest.raises(ValueError, match="even"):
        beale_dos(5)
