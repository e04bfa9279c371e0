"""Comparing the outputs of two differently compiled programs.

Bitwise equality holds only for the *same* program run again (resume determinism). Two
programs that compute the same arithmetic but are compiled apart (``nnx.jit`` vs ``jax.jit``,
a vmapped vs a plain trace, an inference vs a training loop, another fusion or vector width
on another CPU) may round an op differently by an ulp. Each such ulp is propagated through
the few steps of the small recurrences the tests run, so the bound is a small multiple of the
dtype's machine epsilon, relative to the values' scale (~1 here): 64 eps is 7.6e-6 in
float32 and 1.4e-14 in float64 -- far below any real difference (a wrong gate, mask or
weight moves outputs by 1e-2 or more).
"""

from __future__ import annotations

import jax
import numpy as np

ULPS = 64


def assert_same_math(got, want, ulps: int = ULPS) -> None:
    """Every leaf of ``got`` equals ``want`` to ``ulps`` machine epsilons of its dtype
    (relative and absolute): same arithmetic, compiled apart."""
    got_leaves, want_leaves = jax.tree.leaves(got), jax.tree.leaves(want)
    assert len(got_leaves) == len(want_leaves), (len(got_leaves), len(want_leaves))
    for a, b in zip(got_leaves, want_leaves, strict=True):
        a, b = np.asarray(a), np.asarray(b)
        assert a.shape == b.shape and a.dtype == b.dtype, (a.shape, a.dtype, b.shape, b.dtype)
        if not np.issubdtype(a.dtype, np.floating):
            np.testing.assert_array_equal(a, b)
            continue
        tol = ulps * float(np.finfo(a.dtype).eps)
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)
