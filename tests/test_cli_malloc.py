"""``lstmjax run --malloc auto``: the tuned heap for ordinary trials, glibc's defaults for
trials whose memory estimate is large (a tuned heap can grow to 2-3x the working set).

The estimate's closed form (``lstmjax.experiment.resources``): per seed
``2 B T (G H + 3 H) L d`` activation elements (``T/K + K`` instead of T with remat) plus
``4 N`` parameter-sized elements, 4 bytes each."""

from __future__ import annotations

import lstmjax as lj
from lstmjax import cli
from lstmjax.experiment.resources import largest_trial_bytes


def _cfg(length, remat=None, frontier=None):
    raw = {"name": "m", "task": {"name": "adding", "length": length},
           "model": {"cell": "lstm", "hidden_size": 64, "remat": remat},
           "train": {"batch_size": 16, "seeds": 1}}
    if frontier:
        raw["frontier"] = frontier
    return lj.experiment.from_dict(raw)


def test_auto_keeps_the_tuned_heap_for_small_trials_and_not_for_t_100k():
    small = largest_trial_bytes(_cfg(100))
    long = largest_trial_bytes(_cfg(100_000, remat="auto"))
    # adding T=100: 2 * 16 * 100 * (256 + 192) elements of activations, far below the limit
    assert 2 * 16 * 100 * 448 * 4 < small < cli.KEEP_FREED_LIMIT
    # T = 100k with remat keeps T*H outputs per seed: 2 * 16 * 100000 * 64 * 4 B = 819 MB
    assert long > 2 * 16 * 100_000 * 64 * 4 > cli.KEEP_FREED_LIMIT


def test_a_frontier_is_judged_at_its_largest_gap():
    search = {"key": "task.length", "start": 5, "max": 20_000}
    at_max = largest_trial_bytes(_cfg(5, frontier=search))
    assert at_max == largest_trial_bytes(_cfg(20_000)) > cli.KEEP_FREED_LIMIT


def test_malloc_flag_is_parsed_with_auto_as_default():
    parser = cli.build_parser()
    assert parser.parse_args(["run", "c.yaml"]).malloc == "auto"
    assert parser.parse_args(["run", "c.yaml", "--malloc", "default"]).malloc == "default"
