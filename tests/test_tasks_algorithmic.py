"""The Chomsky-hierarchy tasks, associative recall, induction head and ListOps against their
published definitions, with oracles written here in NumPy / plain Python.

As in test_tasks_definitions.py: each configuration is sampled by ONE compiled
``jit(vmap(sample))`` over the keys (k0, k0, k1) (same key -> same batch, other key -> other
batch); the targets are recomputed from the inputs by the definition; the analytic chance
loss is compared with the empirical loss of the best input-blind predictor (the empirical
target distribution at each time step); ``evaluate`` is run on perfect and blind outputs.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lstmjax import tasks

N = 10_000  # samples per configuration
N_EVAL = 512

# Every configuration sampled below; all are drawn by one compiled program (compiles, not
# sampling, are the slow part on CPU).
CHOMSKY = ["cycle_navigation", "even_pairs", "modular_arithmetic", "parity",
           "reverse_string", "stack_manipulation"]
CONFIGS = {
    **{name: (name, dict(length=8), N) for name in CHOMSKY},
    "recall": ("associative_recall", dict(length=32, vocab_size=40, n_pairs=4), N),
    "recall_quiet": ("associative_recall",
                     dict(length=32, vocab_size=40, n_pairs=4, random_non_queries=False), 1024),
    "induction": ("induction_head", dict(length=10, n_symbols=5), N),
    "listops": ("listops", dict(length=30, min_length=5, max_depth=4, max_args=4), N),
    "reverse_fixed": ("reverse_string", dict(length=6, min_length=6), 128),
}


class FewCandidatesListOps(tasks.ListOpsTask):
    """4 candidate trees per round (P(none kept) ~ 0.5): the rejection loop runs many
    rounds, which the sampled law must not notice."""

    def _candidates(self, batch_size):
        return 4


def task_of(label):
    name, params, _ = CONFIGS[label]
    return FewCandidatesListOps(**params) if name == "listops" else tasks.make(name, **params)


@functools.cache
def _all_samples():
    """{label: (x, y, mask, lengths)} as NumPy, from ONE jit of ``vmap(sample)`` over the
    keys (k0, k0, k1) per configuration: same key -> same batch, other key -> other."""
    keys = jax.random.split(jax.random.key(0))[jnp.array([0, 0, 1])]
    todo = {label: (task_of(label), n) for label, (_, _, n) in CONFIGS.items()}
    batches = jax.jit(
        lambda k: {lab: jax.vmap(t.sample, in_axes=(0, None))(k, n // 2)
                   for lab, (t, n) in todo.items()}
    )(keys)
    out = {}
    for label, batch in batches.items():
        task, n = todo[label]
        arrays = [np.asarray(a) for a in batch]
        for a, dtype in zip(arrays, (np.float32, np.int32, np.float32, np.int32), strict=True):
            assert a.dtype == dtype and a.shape[:2] == (3, n // 2)
            np.testing.assert_array_equal(a[0], a[1])
        assert not np.array_equal(arrays[0][0], arrays[0][2])
        x, y, mask, lengths = (np.concatenate([a[1], a[2]]) for a in arrays)
        assert x.shape == (n, task.seq_len, task.input_size)
        assert y.shape == mask.shape == (n, task.seq_len)
        out[label] = (x, y, mask, lengths)
    return out


def draw(label):
    return _all_samples()[label]


def ids_of(x):
    """One-hot inputs -> ids, -1 at all-zero (padding) steps."""
    assert set(np.unique(x)) <= {0.0, 1.0} and (x.sum(-1) <= 1).all()
    return np.where(x.any(-1), x.argmax(-1), -1)


def entropy(counts):
    p = np.asarray(counts, float)
    p = p[p > 0] / p.sum()
    return float(-(p * np.log(p)).sum())


def blind_loss(y, mask, n_classes):
    """Token-mean cross-entropy of the best predictor that sees only the time step: the
    empirical target distribution among the sequences scored at each step."""
    total = 0.0
    for t in range(y.shape[1]):
        scored = y[mask[:, t] > 0, t]
        if scored.size:
            total += scored.size * entropy(np.bincount(scored, minlength=n_classes))
    return total / mask.sum()


def blind_logits(y, mask, n_classes):
    """The blind predictor's log-probabilities at every step, shape y.shape + (C,)."""
    logp = np.zeros((y.shape[1], n_classes))
    for t in range(y.shape[1]):
        counts = np.bincount(y[mask[:, t] > 0, t], minlength=n_classes) + 1e-3
        logp[t] = np.log(counts / counts.sum())
    return np.broadcast_to(logp, y.shape + (n_classes,))


# Outputs to evaluate, per configuration: ``build(task, samples, batch) -> [outputs, ...]``
# (``batch`` = the first N_EVAL samples). All are evaluated by one compiled program.
EVAL_BUILDERS = {}


def outputs_for(*labels):
    def register(build):
        EVAL_BUILDERS.update(dict.fromkeys(labels, build))
        return build

    return register


@functools.cache
def _evaluations():
    todo, made = {}, {}
    for label, build in EVAL_BUILDERS.items():
        samples = draw(label)
        batch = tasks.Batch(*(a[:N_EVAL] for a in samples))
        made[label] = task_of(label)
        todo[label] = (jnp.asarray(np.stack(build(made[label], samples, batch)), jnp.float32),
                       batch)
    metrics = jax.jit(lambda todo: {
        label: jax.vmap(made[label].evaluate, in_axes=(0, None))(*args)
        for label, args in todo.items()
    })(todo)
    out = {}
    for label, m in metrics.items():
        m = {k: np.asarray(v) for k, v in m.items()}
        assert m["solved"].dtype == bool
        out[label] = [{k: v[i].item() for k, v in m.items()} for i in range(len(m["loss"]))]
    return out


def evaluated(label):
    """``evaluate`` (jit, vmap) of each output of ``EVAL_BUILDERS[label]``: metric dicts."""
    return _evaluations()[label]


def assert_uniform(values, support, n_se=5):
    values = np.asarray(values).ravel()
    freq = np.array([(values == v).mean() for v in support])
    assert freq.sum() == pytest.approx(1.0)
    p = 1.0 / len(support)
    np.testing.assert_array_less(np.abs(freq - p), n_se * math.sqrt(p * (1 - p) / values.size))


def close(a, b, rel=0.02):
    return abs(a - b) <= rel * abs(b)


# ------------------------------------------------------------------------ Chomsky hierarchy
def _stack_oracle(tokens):
    stack = []
    for tok in tokens:
        if tok in (0, 1):
            stack.append(tok)
        elif tok == 2:
            if stack:
                stack.pop()
        else:
            stack.append(tok - 3)
    return stack[::-1] + [2]


def _modular_oracle(tokens, m=5):
    text = "".join(str(t) if t < m else "+-*"[t - m] for t in tokens)
    return eval(text) % m  # Python's precedence: * before + and -  # noqa: S307


ORACLES = {  # string ids -> target ids of the output steps (the paper's definitions)
    "parity": lambda s: [sum(s) % 2],
    "even_pairs": lambda s: [sum(a != b for a, b in zip(s, s[1:], strict=False)) % 2],
    "cycle_navigation": lambda s: [sum(a - 1 for a in s) % 5],
    "modular_arithmetic": lambda s: [_modular_oracle(s)],
    "reverse_string": lambda s: s[::-1],
    "stack_manipulation": lambda s: _stack_oracle(s),
}
ALPHABET = {"parity": 2, "even_pairs": 2, "cycle_navigation": 3, "modular_arithmetic": 9,
            "reverse_string": 2, "stack_manipulation": 5}
OUT_LEN = {"reverse_string": lambda n: n, "stack_manipulation": lambda n: n + 1}


@pytest.mark.parametrize("name", sorted(ORACLES))
def test_chomsky_definition_and_chance(name):
    L = 8
    task = task_of(name)
    K = ALPHABET[name]
    out_len = OUT_LEN.get(name, lambda n: 1 + 0 * n)
    assert task.input_size == K + 1 and task.seq_len == L + out_len(L)
    x, y, mask, lengths = draw(name)
    ids = ids_of(x)
    n = np.argmax(np.c_[ids == K, np.ones(N, bool)], axis=1)  # the first output step
    # n uniform on 1..L (modular arithmetic: even n reduced by one: odd, 2/L each)
    assert_uniform(n, [1, 3, 5, 7] if name == "modular_arithmetic" else range(1, L + 1))
    t = np.arange(ids.shape[1])[None, :]
    string = t < n[:, None]
    out = ~string & (t < (n + out_len(n))[:, None])
    assert ((ids[string] >= 0) & (ids[string] < K)).all()
    assert (ids[out] == K).all() and (ids[~string & ~out] == -1).all()
    np.testing.assert_array_equal(mask, out.astype(np.float32))
    np.testing.assert_array_equal(lengths, n + out_len(n))
    want = np.zeros_like(y)
    for i, (row, n_i) in enumerate(zip(ids.tolist(), n.tolist(), strict=True)):
        answer = ORACLES[name](row[:n_i])
        want[i, n_i : n_i + len(answer)] = answer
    np.testing.assert_array_equal(y, want)
    if name == "modular_arithmetic":  # numbers at even positions, operators + - * at odd
        assert_uniform(ids[string & (t % 2 == 0)], range(5))
        assert_uniform(ids[string & (t % 2 == 1)], [5, 6, 7])
    elif name == "stack_manipulation":  # s stack bits, s uniform on 1..n-1, then actions
        s = np.where(n == 1, 1, np.argmax((ids >= 2) & string, axis=1))
        assert_uniform(s[n == L], range(1, L))
        assert_uniform(ids[string & (t < s[:, None])], [0, 1])
        assert_uniform(ids[string & (t >= s[:, None])], [2, 3, 4])
    else:
        assert_uniform(ids[string], range(K))
    assert close(blind_loss(y, mask, task.output_size), task.chance_loss)


def test_chomsky_chance_levels_and_paper_examples():
    assert tasks.make("parity").chance_loss == pytest.approx(math.log(2))
    assert tasks.make("reverse_string").chance_loss == pytest.approx(math.log(2))
    assert tasks.make("even_pairs", length=40).chance_loss == pytest.approx(39 / 40 * math.log(2))
    assert tasks.make("cycle_navigation", length=1).chance_loss == pytest.approx(math.log(3))
    assert tasks.make("modular_arithmetic", length=1).chance_loss == pytest.approx(math.log(5))
    plus, minus, times, pop, push0, push1 = 5, 6, 7, 2, 3, 4
    examples = {  # the examples of the paper's task docstrings: string -> output
        "parity": [([1, 0, 1, 0, 1, 0, 0], [1]), ([0, 1, 1, 1, 1], [0])],
        "even_pairs": [([0, 0, 1, 1, 1, 0], [0]), ([0, 1, 0, 1, 0, 0, 1], [1])],
        "cycle_navigation": [([2, 0, 1, 0, 0], [3]), ([2, 2, 2, 0], [2])],  # 1 -1 0 -1 -1 -> 3
        "modular_arithmetic": [
            ([1, plus, 2, times, 3], [2]),
            ([1, minus, 1, minus, 1], [4]),
            ([0, times, 1, plus, 4, times, 3, minus, 2], [0]),
        ],
        "stack_manipulation": [
            ([0, 1, 1, 0, push1, pop, pop], [1, 1, 0, 2, 0, 0, 0, 0]),
            ([1, 1, 0, pop, pop, pop], [2, 0, 0, 0, 0, 0, 0]),
            ([1, push0], [0, 1, 2]),
        ],
        "reverse_string": [([0, 1, 1, 0, 1, 0], [0, 1, 0, 1, 1, 0]), ([1, 0, 0], [0, 0, 1])],
    }
    width = 9
    inputs = {
        name: (jnp.array([string + [0] * (width - len(string)) for string, _ in cases]),
               jnp.array([len(string) for string, _ in cases]))
        for name, cases in examples.items()
    }
    answers = jax.jit(  # one compiled program for all the tasks' answers
        lambda inputs: {name: tasks.make(name, length=width)._answer(*args)
                        for name, args in inputs.items()}
    )(inputs)
    for name, cases in examples.items():
        for row, (_, want) in zip(np.asarray(answers[name]), cases, strict=True):
            assert row[: len(want)].tolist() == want, (name, want)


BAD = int(0.15 * N_EVAL)  # sequences made wrong at their first output step


@outputs_for("parity", "reverse_string", "stack_manipulation")
def _chomsky_outputs(task, samples, batch):
    C, yb, mb = task.output_size, batch.targets, batch.mask
    perfect = 20.0 * np.eye(C)[yb]
    wrong = perfect.copy()  # wrong at the first output step of BAD sequences
    first = np.argmax(mb > 0, axis=1)
    bad = np.arange(BAD)
    wrong[bad, first[bad]] = 20.0 * np.eye(C)[(yb[bad, first[bad]] + 1) % C]
    after = np.zeros_like(mb, bool)  # stack: the padding after the termination symbol
    if task.name == "stack_manipulation":
        for i in range(N_EVAL):
            steps = np.nonzero(mb[i])[0]
            after[i, steps[list(yb[i, steps]).index(2)] + 1 : steps[-1] + 1] = True
        assert after.any()
    padding = 20.0 * np.eye(C)[np.where(after, 1, yb)]  # wrong only there
    return [perfect, blind_logits(*samples[1:3], C)[:N_EVAL], wrong, padding]


@pytest.mark.parametrize("name", ["parity", "reverse_string", "stack_manipulation"])
def test_chomsky_evaluate(name):
    """One task per metric variant: classification, string output, stack (scored up to
    the termination symbol); the other tasks share the parity code path."""
    task = task_of(name)
    good, chance, off, pad = evaluated(name)
    assert good["accuracy"] == 1 and good["sequence_accuracy"] == 1 and good["solved"]
    assert good["loss"] < 1e-6
    assert chance["loss"] == pytest.approx(task.chance_loss, rel=0.1)
    assert chance["accuracy"] < 0.9 and not chance["solved"]
    assert off["sequence_accuracy"] == pytest.approx(1 - BAD / N_EVAL)
    if name == "parity":
        assert off["accuracy"] == pytest.approx(1 - BAD / N_EVAL) and not off["solved"]
    else:  # the paper's token accuracy
        assert 0.9 < off["accuracy"] < 1 and off["solved"]
    assert pad["accuracy"] == 1 and pad["solved"]
    assert (pad["loss"] > 0.1) == (name == "stack_manipulation")


def test_chomsky_fixed_length_and_errors():
    _, _, mask, lengths = draw("reverse_fixed")
    assert (lengths == 12).all() and (mask.sum(1) == 6).all()
    assert task_of("reverse_fixed").chance_loss == pytest.approx(math.log(2))
    with pytest.raises(ValueError, match="min_length=7 exceeds length=6"):
        tasks.make("parity", length=6, min_length=7)
    with pytest.raises(ValueError, match="modulus >= 2"):
        tasks.make("modular_arithmetic", modulus=1)


# ------------------------------------------------------------------- associative recall
def test_associative_recall_definition_and_chance():
    L, V, P = 32, 40, 4
    task = task_of("recall")
    x, y, mask, lengths = draw("recall")
    ids = ids_of(x)
    half, slots = V // 2, (L - 2 * P) // 2
    keys, values = ids[:, 0 : 2 * P : 2], ids[:, 1 : 2 * P : 2]
    assert ((keys >= 1) & (keys < half)).all() and ((values >= half) & (values < V)).all()
    assert (np.sort(keys, 1)[:, 1:] != np.sort(keys, 1)[:, :-1]).all()  # distinct
    assert (np.sort(values, 1)[:, 1:] != np.sort(values, 1)[:, :-1]).all()
    assert_uniform(keys, range(1, half))
    assert_uniform(values, range(half, V))
    assert (mask[:, : 2 * P] == 0).all() and (mask.sum(1) == P).all() and (lengths == L).all()
    t_query = np.nonzero(mask)[1].reshape(N, P)
    assert ((t_query - 2 * P) % 2 == 0).all()
    queried = np.take_along_axis(ids, t_query, axis=1)
    match = queried[:, :, None] == keys[:, None, :]  # [N, query, pair]
    assert (match.sum(1) == 1).all() and (match.sum(2) == 1).all()  # each key queried once
    answers = (match * values[:, None]).sum(2)
    np.testing.assert_array_equal(np.take_along_axis(y, t_query, 1), answers)
    assert (y[mask == 0] == 0).all()
    # The j-th key's slot is the j-th weighted draw without replacement; the first draw
    # has P(slot i) proportional to (i + 1) ** (power_a - 1).
    first_slot = (t_query[match[:, :, 0]] - 2 * P) // 2
    w = np.arange(1, slots + 1) ** (0.01 - 1)
    freq = np.bincount(first_slot, minlength=slots) / N
    np.testing.assert_array_less(np.abs(freq - w / w.sum()), 5 * np.sqrt(w / w.sum() / N) + 1e-3)
    assert_uniform(ids[:, 2 * P :][mask[:, 2 * P :] == 0], range(V))  # noise tokens
    assert close(blind_loss(y, mask, V), task.chance_loss)
    assert task.chance_loss == pytest.approx(math.log(V - half))


@outputs_for("recall_quiet")
def _recall_outputs(task, samples, batch):
    perfect = 20.0 * np.eye(40)[batch.targets]
    one_wrong = perfect.copy()
    t0 = np.argmax(batch.mask[0])
    one_wrong[0, t0] = 20.0 * np.eye(40)[(batch.targets[0, t0] + 1) % 40]
    return [perfect, blind_logits(*samples[1:3], 40)[:N_EVAL], one_wrong]


def test_associative_recall_evaluate_and_errors():
    task = task_of("recall_quiet")
    x, y, mask, lengths = draw("recall_quiet")
    assert (ids_of(x)[:, 8:][mask[:, 8:] == 0] == 0).all()  # no noise tokens
    good, chance, wrong = evaluated("recall_quiet")
    assert good["accuracy"] == 1 and good["solved"]
    assert chance["loss"] == pytest.approx(task.chance_loss, rel=0.1) and not chance["solved"]
    assert wrong["accuracy"] == pytest.approx(1 - 1 / (4 * N_EVAL)) and wrong["solved"]
    assert wrong["sequence_accuracy"] == pytest.approx(1 - 1 / N_EVAL)
    for params, fragment in [
        (dict(length=30), "length >= 32"),
        (dict(length=62, n_pairs=16), "length >= 64"),
        (dict(length=33, n_pairs=4), "must be even"),
        (dict(length=64, vocab_size=64), "vocab_size >= 65"),
        (dict(power_a=0.0), "power_a=0.0"),
    ]:
        with pytest.raises(ValueError, match=fragment):
            tasks.make("associative_recall", **params)


# ------------------------------------------------------------------------ induction head
@outputs_for("induction")
def _induction_outputs(task, samples, batch):
    K = task.output_size
    return [20.0 * np.eye(K)[batch.targets], np.zeros(batch.targets.shape + (K,))]


def test_induction_head_definition_chance_and_evaluate():
    L, K = 10, 5
    task = task_of("induction")
    x, y, mask, lengths = draw("induction")
    ids = ids_of(x)
    assert x.shape[1:] == (L + 1, K + 1) and (lengths == L + 1).all()
    trig = ids == K
    assert (trig.sum(1) == 2).all() and trig[:, L].all()
    p = np.argmax(trig, axis=1)
    assert_uniform(p, range(L - 2))  # 0..L-3
    np.testing.assert_array_equal(y[:, L], ids[np.arange(N), p + 1])
    assert (mask[:, L] == 1).all() and mask.sum() == N and (y[:, :L] == 0).all()
    assert_uniform(ids[~trig], range(K))
    assert close(blind_loss(y, mask, K), task.chance_loss)
    assert task.chance_loss == pytest.approx(math.log(K))
    good, chance = evaluated("induction")
    assert good["accuracy"] == 1 and good["solved"]
    assert chance["loss"] == pytest.approx(math.log(K)) and not chance["solved"]


# ------------------------------------------------------------------------------- listops
OPS = {10: min, 11: max, 12: lambda v: int(np.median(v)), 13: lambda v: sum(v) % 10}


def _listops_eval(tokens):
    """(value, depth, child counts) of a prefix-form ListOps token list."""
    pos = 0
    counts = []

    def node(depth):
        nonlocal pos
        tok = tokens[pos]
        pos += 1
        if tok < 10:
            return tok, depth
        args, deepest = [], depth
        while tokens[pos] != 14:
            v, d = node(depth + 1)
            args.append(v)
            deepest = max(deepest, d)
        pos += 1
        counts.append(len(args))
        return OPS[tok](args), deepest

    value, depth = node(1)
    assert pos == len(tokens)
    return value, depth, counts


def _tree_sizes(length, max_depth, max_args):
    """P(tree size = s), s < length, by direct convolution (independent of the library)."""
    f = np.zeros(length)
    f[1] = 1.0
    for _ in range(max_depth - 1):
        kids = np.zeros(length)
        power = f.copy()
        for _k in range(2, max_args + 1):
            power = np.convolve(power, f)[:length]
            kids += power / (max_args - 1)
        f = np.zeros(length)
        f[1] = 0.75
        f[2:] = 0.25 * kids[: length - 2]
    return f


def test_listops_definition_and_chance():
    L, lo, D, A = 30, 5, 4, 4
    task = task_of("listops")
    x, y, mask, lengths = draw("listops")
    ids = ids_of(x)
    assert x.shape[1:] == (L, 15)
    assert ((lengths > lo) & (lengths < L)).all()
    labels = y[np.arange(N), lengths - 1]
    for i in range(N):
        tokens = ids[i, : lengths[i]].tolist()
        assert (ids[i, lengths[i] :] == -1).all()
        value, depth, counts = _listops_eval(tokens)
        assert value == labels[i]
        assert depth <= D and all(2 <= c <= A for c in counts)
    np.testing.assert_array_equal(mask, np.arange(L)[None, :] == lengths[:, None] - 1)
    # The kept lengths follow the generator's size law restricted to the window.
    sizes = _tree_sizes(L, D, A)
    p_n = sizes[lo + 1 :] / sizes[lo + 1 :].sum()
    freq = np.bincount(lengths, minlength=L)[lo + 1 :] / N
    np.testing.assert_array_less(np.abs(freq - p_n), 5 * np.sqrt(p_n * (1 - p_n) / N) + 1e-3)
    assert task.acceptance == pytest.approx(sizes[lo + 1 :].sum(), rel=1e-9)
    # The labels follow the dynamic program's law; the chance loss is its E_n H(value | n).
    p_v = task.length_value_probs().sum(0)
    freq_v = np.bincount(labels, minlength=10) / N
    np.testing.assert_array_less(np.abs(freq_v - p_v), 5 * np.sqrt(p_v * (1 - p_v) / N))
    assert close(blind_loss(y, mask, 10), task.chance_loss)


@outputs_for("listops")
def _listops_outputs(task, samples, batch):
    return [20.0 * np.eye(10)[batch.targets], blind_logits(*samples[1:3], 10)[:N_EVAL]]


def test_listops_evaluate_rounds_and_errors():
    good, chance = evaluated("listops")
    assert good["accuracy"] == 1 and good["solved"] and not chance["solved"]
    # The candidates per round: a sequence finds none with probability < 1 / (20 B),
    # within 2^24 candidate steps.
    real = tasks.make("listops", length=30, min_length=5, max_depth=4, max_args=4)
    for batch_size in (1, 32, 5000):
        r = real._candidates(batch_size)
        assert (1 - real.acceptance) ** r < 1 / (20 * batch_size)
        assert (1 - real.acceptance) ** (r - 1) >= 1 / (20 * batch_size)
    assert tasks.make("listops")._candidates(256) == (1 << 24) // (256 * 1999)
    with pytest.raises(ValueError, match="length >= 502"):
        tasks.make("listops", length=501)
    with pytest.raises(ValueError, match="no tree"):
        tasks.make("listops", length=40, min_length=20, max_depth=2, max_args=3)
