"""ListOps (Nangia & Bowman 2018) in its Long Range Arena form, generated on the device."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from lstmjax.tasks.base import (
    Batch,
    Task,
    argmax_correct,
    at_last_step,
    check_int,
    entropy,
)

TOKENS = ("0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "[MIN", "[MAX", "[MED", "[SM", "]")
MIN, MAX, MED, SM = range(4)  # operator ids; token id = 10 + operator id
END = 14
VALUE_P = 0.25  # LRA: a node below the maximum depth is an operator with probability 1/4


def _fft_len(n: int) -> int:
    """Smallest 2^a 5^b >= n (a fast FFT length for NumPy)."""
    return min(f << max(0, (-(-n // f) - 1).bit_length()) for f in (1, 5, 25, 125, 625))


def _powers(x, k: int) -> list:
    """[x^0, ..., x^k] by repeated multiplication (``**`` on complex arrays is slow)."""
    out = [np.ones_like(x), x]
    for _ in range(k - 1):
        out.append(out[-1] * x)
    return out


def _depth_sizes(length: int, max_depth: int, max_args: int) -> list[int]:
    """Array sizes (largest tree size + 1, at most ``length``) of the subtrees rooted at
    depths max_depth, max_depth - 1, ..., 1."""
    sizes, largest = [], 1
    for _ in range(max_depth):
        sizes.append(min(largest, length - 1) + 1)
        largest = 2 + max_args * largest
    return sizes


@functools.cache
def _size_dist(length: int, max_depth: int, max_args: int) -> np.ndarray:
    """P(tree size = s) for s < length (sizes >= length are dropped)."""
    sizes = _depth_sizes(length, max_depth, max_args)
    f = np.zeros(sizes[0])
    f[1] = 1.0
    for size in sizes[1:]:
        nfft = _fft_len(max_args * len(f))
        spec_pow = _powers(np.fft.rfft(f, nfft), max_args)
        children = sum(spec_pow[2:]) / (max_args - 1)
        g = np.fft.irfft(children, nfft)[: size - 2]
        f = np.zeros(size)
        f[1] = 1.0 - VALUE_P
        f[2:] = VALUE_P * np.clip(g, 0.0, None)
    return np.pad(f, (0, length - len(f)))


@functools.cache
def _label_dist(length: int, max_depth: int, max_args: int) -> np.ndarray:
    """P(tree size = s, value = v) [length, 10], by dynamic programming over the depth.

    Children are i.i.d.; in the Fourier domain over the size, the k-fold size
    convolution is a k-th power, so every operator's value distribution follows from
    the children's joint (size, value) law: MIN/MAX from P(all children >= v or < v),
    SM from a cyclic transform over the value, MED from counts of children below,
    at and above thresholds.
    """
    sizes = _depth_sizes(length, max_depth, max_args)
    ks = range(2, max_args + 1)
    f = np.zeros((sizes[0], 10))
    f[1] = 0.1
    for size in sizes[1:]:
        nfft = _fft_len(max_args * len(f))
        F = np.fft.rfft(f, nfft, axis=0)  # [Nf, 10]
        ge = np.cumsum(F[:, ::-1], axis=1)[:, ::-1]  # ge[:, v]: P(size, value >= v)
        ge = np.concatenate([ge, np.zeros_like(ge[:, :1])], axis=1)  # ge[:, 10] = 0
        below = ge[:, :1] - ge  # below[:, v]: P(size, value < v)
        pw = {"ge": _powers(ge, max_args), "below": _powers(below, max_args),
              "equal": _powers(ge[:, :10] - ge[:, 1:], max_args // 2)}
        out = np.zeros((F.shape[0], 10), complex)  # transform of P(children size, value)
        for k in ks:
            out += -np.diff(pw["ge"][k], axis=1)  # MIN: P(all >= v) - P(all >= v + 1)
            out += np.diff(pw["below"][k], axis=1)  # MAX: P(all < v + 1) - P(all < v)
            out += _median_spectrum(pw, k)  # MED
        cyc_pow = _powers(np.fft.fft(F, axis=1), max_args)  # cyclic over the value: SM
        out += np.fft.ifft(sum(cyc_pow[2:]), axis=1)
        g = np.fft.irfft(out / (4 * len(ks)), nfft, axis=0)[: size - 2]
        f = np.zeros((size, 10))
        f[1] = (1.0 - VALUE_P) / 10
        f[2:] = VALUE_P * np.clip(g, 0.0, None)
    return np.pad(f, ((0, length - len(f)), (0, 0)))


def _median_spectrum(pw, k: int):
    """Transform [Nf, 10] of P(children size, int(median of the k values) = v), from
    the powers ``pw`` of the transforms of P(child size, value >= v / < v / = v)."""
    comb = math.comb
    ge, below, equal = pw["ge"], pw["below"], pw["equal"]
    m = k // 2
    if k % 2:  # median = a_{m+1} >= v: at least m + 1 children >= v
        surv = sum(comb(k, c) * ge[c] * below[k - c] for c in range(m + 1, k + 1))
        return -np.diff(surv, axis=1)
    # k = 2m: median = (a_m + a_{m+1}) // 2 >= v  <=>  a_m >= v, or a_m = x < v and
    # a_{m+1} >= 2v - x: then i < m children are < x, m - i are = x, m are >= 2v - x.
    surv = sum(comb(k, i) * below[i] * ge[k - i] for i in range(m))  # a_m >= v
    at_x = sum(comb(k, i) * comb(k - i, m - i) * below[i][:, :10] * equal[m - i]
               for i in range(m))  # [Nf, 10]: a_m = x and the rest fixed as above
    for v in range(1, 10):
        for x in range(max(0, 2 * v - 9), v):
            surv[:, v] += at_x[:, x] * ge[m][:, 2 * v - x]
    return -np.diff(surv, axis=1)


@dataclass(frozen=True)
class ListOpsTask(Task):
    """ListOps, Nangia & Bowman 2018 (arXiv:1804.06028), in the Long Range Arena form
    (Tay et al. 2021, arXiv:2011.04006; generator ``lra_benchmarks/data/listops.py``).

    A random tree is generated from depth 1: a node above ``max_depth`` (10) is, with
    probability 1/4, an operator (uniform over MIN, MAX, MED, SM = sum mod 10) with
    k uniform on 2..``max_args`` (10) children, else a digit uniform on 0..9; nodes at
    ``max_depth`` are digits. MED is ``int(np.median(values))``. The tree is written in
    prefix form over 15 tokens ``0-9 [MIN [MAX [MED [SM ]`` (ids 0..14; LRA's tuple
    parentheses dropped, as the S4 pipeline reads the LRA files). As in LRA, only
    trees whose token count n satisfies ``min_length`` < n < ``length`` are kept (LRA:
    500 < n < 2000); we draw them exactly, by rejection on the device (candidates in
    parallel, more rounds until every sequence has one). Inputs are one-hot, right-
    padded to ``seq_len = length``; the target is the tree's value (10 classes), with
    the loss (cross-entropy) at the last valid step.

    chance_loss: the loss of the best predictor that sees the time step but no token,
    i.e. knows n: E_n[H(value | n)], exact from a dynamic program over (depth, size,
    value). A sequence is correct when the argmax at its last step is the value;
    ``solved`` (LRA reports accuracy, no threshold): accuracy >= ``solved_threshold``
    (default 1.0; ListOps is deterministic).
    """

    name = "listops"
    source = "Nangia & Bowman 2018; Tay et al. 2021 (LRA)"
    loss_type = "xent"
    input_size = len(TOKENS)
    output_size = 10
    length: int = 2000
    min_length: int = 500
    max_depth: int = 10
    max_args: int = 10
    solved_threshold: float = 1.0

    def validate(self):
        check_int(self.name, "max_depth", self.max_depth, 1)
        check_int(self.name, "max_args", self.max_args, 2)
        check_int(self.name, "min_length", self.min_length, 0)
        check_int(
            self.name, "length", self.length, self.min_length + 2,
            "kept trees have min_length < n < length",
        )
        if self.acceptance <= 0.0:
            raise ValueError(
                f"{self.name}: no tree of max_depth={self.max_depth}, max_args={self.max_args} "
                f"has min_length={self.min_length} < n < length={self.length} tokens; "
                "widen the window or raise max_depth/max_args"
            )
        super().validate()

    @property
    def seq_len(self) -> int:
        return self.length

    @property
    def acceptance(self) -> float:
        """P(min_length < n < length) for one generated tree (0 if below 1e-12)."""
        sizes = _size_dist(self.length, self.max_depth, self.max_args)
        p = float(np.sum(sizes[self.min_length + 1 :]))
        return p if p > 1e-12 else 0.0

    def length_value_probs(self) -> np.ndarray:
        """P(n, value) [length, 10] of the kept trees (zero outside the window)."""
        joint = _label_dist(self.length, self.max_depth, self.max_args).copy()
        joint[: self.min_length + 1] = 0.0
        return joint / joint.sum()

    @property
    def chance_loss(self) -> float:
        joint = self.length_value_probs()
        p_n = joint.sum(axis=1)
        kept = p_n > 0
        return float(np.sum(p_n[kept] * entropy(joint[kept] / p_n[kept, None])))

    # -- sampling -----------------------------------------------------------------------
    def _candidates(self, batch_size: int) -> int:
        """Candidates per sequence and round: the chance that a sequence finds none is
        below 1 / (20 * batch_size), within a budget of 2^24 candidate steps a round."""
        p = min(self.acceptance, 1.0 - 1e-9)
        want = math.ceil(math.log(1.0 / (20 * batch_size)) / math.log1p(-p))
        return max(1, min(want, (1 << 24) // (batch_size * (self.length - 1))))

    def _structure(self, op_TC, nargs_TC):
        """Run the tree generator's structure on pre-drawn choices for C candidates:
        ``op_TC`` (a node here would be an operator), ``nargs_TC`` (its child count).
        Returns (finished within T tokens, token count n), each [C]."""
        D = self.max_depth

        def step(carry, xs):
            open_C, left_CD, done_C, n_C = carry
            op_C, k_C = xs
            top_CD = jax.nn.one_hot(open_C - 1, D, dtype=jnp.int32)
            closing = ~done_C & (open_C > 0) & (jnp.sum(left_CD * top_CD, 1) == 0)
            node = ~done_C & ~closing
            push = node & op_C & (open_C + 1 < self.max_depth)
            left_CD = left_CD - node[:, None] * top_CD
            new_CD = jax.nn.one_hot(open_C, D, dtype=jnp.int32) * push[:, None]
            left_CD = jnp.where(new_CD > 0, k_C[:, None], left_CD)
            open_C = open_C - closing + push
            finished = (closing | (node & ~push)) & (open_C == 0)
            return (open_C, left_CD, done_C | finished, n_C + (closing | node)), None

        C = op_TC.shape[1]
        zeros_C = jnp.zeros((C,), jnp.int32)
        init = (zeros_C, jnp.zeros((C, D), jnp.int32), jnp.zeros((C,), bool), zeros_C)
        (_, _, done_C, n_C), _ = jax.lax.scan(step, init, (op_TC, nargs_TC))
        return done_C, n_C

    def _write(self, op_TB, nargs_TB, opid_TB, digit_TB):
        """Emit the tokens [B, T] and values [B] of the trees whose structure the
        choices ``op_TB``/``nargs_TB`` fix (as in ``_structure``), with the operator
        and digit choices ``opid_TB``/``digit_TB``."""
        D = self.max_depth
        digits = jnp.arange(10)

        def op_value(op_B, hist_B10):
            k_B = jnp.sum(hist_B10, axis=1)
            cum_B10 = jnp.cumsum(hist_B10, axis=1)

            def kth(j_B):  # j-th smallest value (1-based)
                return jnp.sum(cum_B10 < j_B[:, None], axis=1)

            present = hist_B10 > 0
            values = jnp.stack(
                [
                    jnp.argmax(present, axis=1),  # MIN
                    9 - jnp.argmax(present[:, ::-1], axis=1),  # MAX
                    (kth((k_B + 1) // 2) + kth((k_B + 2) // 2)) // 2,  # MED
                    jnp.sum(hist_B10 * digits, axis=1) % 10,  # SM
                ],
                axis=1,
            )
            return jnp.take_along_axis(values, op_B[:, None], axis=1)[:, 0]

        def step(carry, xs):
            open_B, left_BD, ops_BD, hist_BD10, done_B, value_B = carry
            op_B, k_B, opid_B, digit_B = xs
            top_BD = jax.nn.one_hot(open_B - 1, D, dtype=jnp.int32)
            closing = ~done_B & (open_B > 0) & (jnp.sum(left_BD * top_BD, 1) == 0)
            node = ~done_B & ~closing
            push = node & op_B & (open_B + 1 < self.max_depth)
            leaf = node & ~push
            closed = op_value(
                jnp.sum(ops_BD * top_BD, 1), jnp.sum(hist_BD10 * top_BD[..., None], 1)
            )
            token = jnp.where(leaf, digit_B, -1)
            token = jnp.where(closing, END, jnp.where(push, 10 + opid_B, token))
            # a finished child (closed operator or digit) is counted by its parent
            child = jnp.where(closing, closed, digit_B)
            open_B = open_B - closing
            parent_BD = jax.nn.one_hot(open_B - 1, D, dtype=jnp.int32) * (closing | leaf)[:, None]
            child_B10 = jax.nn.one_hot(child, 10, dtype=jnp.int32)
            hist_BD10 = hist_BD10 + parent_BD[..., None] * child_B10[:, None, :]
            finished = (closing | leaf) & (open_B == 0)
            left_BD = left_BD - node[:, None] * top_BD
            new_BD = jax.nn.one_hot(open_B, D, dtype=jnp.int32) * push[:, None]
            left_BD = jnp.where(new_BD > 0, k_B[:, None], left_BD)
            ops_BD = jnp.where(new_BD > 0, opid_B[:, None], ops_BD)
            hist_BD10 = jnp.where(new_BD[..., None] > 0, 0, hist_BD10)
            open_B = open_B + push
            carry = (open_B, left_BD, ops_BD, hist_BD10, done_B | finished,
                     jnp.where(finished, child, value_B))
            return carry, token

        B = op_TB.shape[1]
        zeros_B = jnp.zeros((B,), jnp.int32)
        zeros_BD = jnp.zeros((B, D), jnp.int32)
        init = (zeros_B, zeros_BD, zeros_BD, jnp.zeros((B, D, 10), jnp.int32),
                jnp.zeros((B,), bool), zeros_B)
        carry, tokens_TB = jax.lax.scan(step, init, (op_TB, nargs_TB, opid_TB, digit_TB))
        return tokens_TB.T, carry[-1]

    def _sample(self, key, batch_size):
        B, T, R = batch_size, self.length - 1, self._candidates(batch_size)
        A = self.max_args - 1  # child counts 2..max_args
        k_rounds, k_values = jax.random.split(key)

        def draw_round(carry):
            # one draw per step and candidate, uniform on 0..4A-1: "an operator here"
            # (probability 1/4) is r < A and its child count 2 + r mod A, independently
            k_next, have_B, choice_TB = carry
            k_next, k_round = jax.random.split(k_next)
            choice_TC = jax.random.randint(k_round, (T, B * R), 0, 4 * A)
            done_C, n_C = self._structure(choice_TC < A, 2 + choice_TC % A)
            ok_BR = (done_C & (n_C > self.min_length)).reshape(B, R)
            pick_B = jnp.arange(B) * R + jnp.argmax(ok_BR, axis=1)
            new_B = ~have_B & jnp.any(ok_BR, axis=1)
            return k_next, have_B | new_B, jnp.where(new_B, choice_TC[:, pick_B], choice_TB)

        init = (k_rounds, jnp.zeros((B,), bool), jnp.zeros((T, B), jnp.int32))
        _, _, choice_TB = jax.lax.while_loop(lambda c: ~jnp.all(c[1]), draw_round, init)
        # operator (r mod 4) and digit (r div 4), one of which each step uses
        value_TB = jax.random.randint(k_values, (T, B), 0, 40)
        tokens_BT, value_B = self._write(
            choice_TB < A, 2 + choice_TB % A, value_TB % 4, value_TB // 4
        )
        tokens_BT = jnp.pad(tokens_BT, ((0, 0), (0, 1)), constant_values=-1)
        lengths_B = jnp.sum(tokens_BT >= 0, axis=1).astype(jnp.int32)
        last_BT = jnp.arange(self.length)[None, :] == lengths_B[:, None] - 1
        inputs = jax.nn.one_hot(tokens_BT, self.input_size, dtype=jnp.float32)
        targets = jnp.where(last_BT, value_B[:, None], 0).astype(jnp.int32)
        return Batch(inputs, targets, last_BT.astype(jnp.float32), lengths_B)

    def correct(self, outputs, batch: Batch):
        self._check_outputs(outputs, batch)
        return at_last_step(argmax_correct(outputs, batch), batch.lengths)
