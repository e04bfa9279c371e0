"""The why, at the right place: gradient flow and gate memory at each variant's own boundary.

A variant's **boundary probes** are its largest solved gap and its smallest unsolved gap: for a
gap frontier, ``largest_solved`` and ``smallest_unsolved`` of its ``frontier.csv`` row; for a
grid over the gap, the largest gap at least :data:`GRID_MIN_SOLVED` of whose seeds solved it and
the smallest larger gap that is not (the Finding's rule). The report reads each probe's
``diagnostics.jsonl`` (:mod:`lstmjax.experiment.diagnose`: per seed, a fixed batch) there:

* **dependency lag** ``L``: ``task.dependency_lags(batch)`` of the seeds' diagnostics batches
  (recorded in each line as ``dependency_lags``; for lines written before that, recomputed from
  the trial's config and seeds), pooled over seeds; ``L`` is their median, and 10/90 % are
  given too -- order statistics of nearest rank ``round(q (n - 1))``, as in
  :func:`lstmjax.diagnostics.gate_stats`.
* **gain at the lag** ``G``: the median over seeds of ``log10_gain[L]`` of
  :func:`lstmjax.diagnostics.gradient_flow` (the gain of the last carry with respect to the
  carry ``L`` steps earlier), at the first recorded step (initialisation) and the last (after
  training).
* **memory time-scale** τ of the keep gate (``τ = -1/ln keep``, in steps): the median over
  seeds of each seed's 10/50/90 % quantiles at the last recorded step (25/75 % for lines
  written before the deciles were recorded); ``None`` in a line (τ rounding to infinity) is ∞.

Words follow from those numbers, with these thresholds:

* ``G <= -3`` (:data:`VANISHED`): "the gradient vanishes before it reaches the dependency";
  ``-3 < G < -1`` (:data:`WEAKENED`): "reaches the dependency attenuated more than 10-fold";
  ``-1 <= G <= 1``: "reaches the dependency within a factor of 10"; ``G > 1``
  (:data:`EXPLODING`): "grows more than 10-fold over the lag (exploding)".
* against initialisation: "up from" / "down from" when training moved ``G`` by at least
  :data:`MOVED` (half a decade), else "about the same as".
* τ against ``L``: median τ >= ``L``: "the typical gate value keeps information across the
  whole lag"; else 90 % τ >= ``L``: "only the upper tail keeps information across the lag";
  else "even τ's 90 % quantile is below the lag: the gates forget before the output needs
  the information" -- or, at a solved probe (which bridged the lag all the same), "fewer than
  10 % of the gate values keep information that long, so a few units carry it".

Plots: ``gradient_flow.png`` (per variant, log10 gain against the lag at initialisation and
after training, median over seeds, the seeds' range shaded, ``L`` marked) and ``gates.png``
(per gated variant, τ over every recorded step: median and the 10-90 % band, ``L`` as a
horizontal line).
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from typing import Any

from lstmjax.experiment.schema import FrontierConfig

__all__ = ["Probe", "boundary_gaps", "boundary_probes", "probe_numbers", "probe_sentence",
           "section", "gradient_flow_plot", "gates_plot", "has_gates"]

# A grid's gap counts as solved when this fraction of its seeds solve it (the frontier's
# default min_solved; the same rule as the Finding's).
GRID_MIN_SOLVED = FrontierConfig.model_fields["min_solved"].default
VANISHED = -3.0  # log10 gain at or below: the gradient vanishes
WEAKENED = -1.0  # below: attenuated more than 10-fold
EXPLODING = 1.0  # above: grows more than 10-fold
MOVED = 0.5  # |change| of log10 gain from initialisation that counts as up / down
ROLES = ("solved", "unsolved")  # largest solved gap, smallest unsolved gap


@dataclasses.dataclass(frozen=True)
class Probe:
    """One boundary probe: ``role`` is ``solved`` (the variant's largest solved gap) or
    ``unsolved`` (its smallest unsolved gap); ``trial`` the report's trial dict."""

    variant: str
    role: str
    gap: Any
    trial: dict


def boundary_gaps(trials: list[dict], frontier_rows: list[dict] | None = None
                  ) -> dict[str, tuple[Any, Any]]:
    """Per variant ``(largest solved gap, smallest unsolved gap)`` (None where there is none):
    from the frontier rows, else from the finished trials of a grid."""
    if frontier_rows is not None:
        return {r["variant"]: (r["largest_solved"], r["smallest_unsolved"])
                for r in frontier_rows}
    out = {}
    for v in dict.fromkeys(t["variant"] for t in trials):
        done = sorted((t["gap"], t["summary"].solved_fraction) for t in trials
                      if t["variant"] == v and t["summary"] is not None)
        solved = [g for g, f in done if f >= GRID_MIN_SOLVED]
        largest = max(solved) if solved else None
        above = [g for g, f in done if f < GRID_MIN_SOLVED and (largest is None or g > largest)]
        out[v] = (largest, min(above) if above else None)
    return out


def boundary_probes(trials: list[dict], frontier_rows: list[dict] | None = None,
                    variants: list[str] | None = None) -> list[Probe]:
    """The finished trials at each variant's boundary gaps, in the order of ``variants``
    (default: the order of the run), solved before unsolved."""
    gaps = boundary_gaps(trials, frontier_rows)
    order = variants if variants is not None else list(gaps)
    out = []
    for v in order:
        for role, gap in zip(ROLES, gaps.get(v, (None, None)), strict=True):
            t = next((t for t in trials if t["variant"] == v and t["gap"] == gap
                      and t["summary"] is not None), None) if gap is not None else None
            if t is not None:
                out.append(Probe(v, role, gap, t))
    return out


# ---- numbers --------------------------------------------------------------------------------
def _nearest_rank(values: list, q: float):
    ranked = sorted(values)
    return ranked[round(q * (len(ranked) - 1))]


def _by_step(lines: list[dict]) -> dict[int, dict[Any, dict]]:
    """``{step: {seed: line}}`` (a later line of the same step and seed wins)."""
    out: dict[int, dict[Any, dict]] = {}
    for d in lines:
        out.setdefault(d["step"], {})[d.get("seed")] = d
    return dict(sorted(out.items()))


def _lags(t: dict, seeds: list) -> list[int] | None:
    """The dependency lags of the seeds' diagnostics batches, pooled: recorded in the lines,
    else recomputed from the trial's config (None when neither is possible)."""
    recorded: dict[Any, list] = {}
    for d in t["diagnostics"]:
        if d.get("dependency_lags") is not None:
            recorded.setdefault(d.get("seed"), d["dependency_lags"])
    if all(s in recorded for s in seeds):
        return [int(x) for s in seeds for x in recorded[s]]
    cfg = t.get("config")
    if cfg is None:
        return None
    try:
        import jax

        from lstmjax.train.loop import make_task

        task = make_task(cfg)
        size = cfg.diagnostics.batch_size if cfg.diagnostics is not None else 32
        out = []
        for s in seeds:  # the Diagnoser's batch: fold_in(PRNGKey(seed), 3)
            batch = task.sample(jax.random.fold_in(jax.random.PRNGKey(s), 3), size)
            out += [int(x) for x in jax.device_get(task.dependency_lags(batch))]
        return out
    except Exception:  # a task this process cannot build (e.g. a plugin not imported): no lag
        return None


def _gain_at(lines: dict[Any, dict], lag: int) -> tuple[float | None, list[float]]:
    """(median over seeds of ``log10_gain[lag]``, the seeds' values)."""
    vals = []
    for d in lines.values():
        gain = (d.get("gradient_flow") or {}).get("log10_gain") or []
        if 0 <= lag < len(gain) and gain[lag] is not None:
            vals.append(float(gain[lag]))
    return (statistics.median(vals) if vals else None), vals


def _tau(line: dict) -> tuple[str, dict[str, float]] | None:
    """(keep gate, {"lo", "median", "hi", "band"}) of one line's τ quantiles, or None."""
    gates = line.get("gates") or {}
    ts = gates.get("timescale")
    if not gates.get("keep_gate") or not ts or "median" not in ts:
        return None
    band = "10–90 %" if "q10" in ts and "q90" in ts else "25–75 %"
    keys = ("q10", "median", "q90") if band.startswith("10") else ("q25", "median", "q75")
    inf = lambda v: math.inf if v is None else float(v)  # noqa: E731
    return gates["keep_gate"], {"lo": inf(ts[keys[0]]), "median": inf(ts[keys[1]]),
                                "hi": inf(ts[keys[2]]), "band": band}


def _tau_at(lines: dict[Any, dict]):
    """(keep gate, median over seeds of each τ quantile) at one step, or None."""
    taus = [x for x in (_tau(d) for d in lines.values()) if x is not None]
    if not taus:
        return None
    med = {k: statistics.median(t[k] for _, t in taus) for k in ("lo", "median", "hi")}
    return taus[0][0], {**med, "band": taus[0][1]["band"]}


def probe_numbers(probe: Probe) -> dict | None:
    """A probe's numbers (see the module docstring), or None without diagnostics:
    ``steps`` (first, last recorded), ``seeds``, ``lag`` ({q10, median, q90} or None),
    ``gain_init``, ``gain_final`` (log10, or None), ``keep_gate`` and ``tau`` (at the last
    step: {lo, median, hi, band}; None for an ungated cell)."""
    steps = _by_step(probe.trial["diagnostics"])
    if not steps:
        return None
    first, last = list(steps)[0], list(steps)[-1]
    seeds = list(steps[last])
    lags = _lags(probe.trial, seeds)
    lag = None if not lags else {q: _nearest_rank(lags, p)
                                 for q, p in (("q10", 0.1), ("median", 0.5), ("q90", 0.9))}
    gain_init = gain_final = None
    if lag is not None:
        gain_init = _gain_at(steps[first], lag["median"])[0]
        gain_final = _gain_at(steps[last], lag["median"])[0]
    tau = _tau_at(steps[last])
    s = probe.trial["summary"]
    return {"steps": (first, last), "seeds": seeds, "lag": lag, "gain_init": gain_init,
            "gain_final": gain_final, "keep_gate": tau[0] if tau else None,
            "tau": tau[1] if tau else None, "solved_seeds": s.solved_seeds,
            "num_seeds": len(s.per_seed)}


# ---- words ----------------------------------------------------------------------------------
def _fmt_tau(x: float) -> str:
    if math.isinf(x):
        return "∞"
    return f"{x:.0f}" if x >= 10 else f"{x:.1f}"


def _gain_words(g: float) -> str:
    if g <= VANISHED:
        return "the gradient vanishes before it reaches the dependency"
    if g < WEAKENED:
        return "the gradient reaches the dependency attenuated more than 10-fold"
    if g <= EXPLODING:
        return "the gradient reaches the dependency within a factor of 10"
    return "the gradient grows more than 10-fold over the lag (exploding)"


def _tau_words(tau: dict, lag: int, solved: bool = False) -> str:
    top = tau["band"].split("–")[1]  # "90 %" (or "75 %" for old lines)
    if tau["median"] >= lag:
        return "the typical gate value keeps information across the whole lag"
    if tau["hi"] >= lag:
        return (f"only the upper tail keeps information across the lag (τ's median is below "
                f"it, its {top} quantile above)")
    if solved:  # it bridged the lag all the same: with gate values beyond these quantiles
        rest = top.replace(" %", "")
        return (f"even τ's {top} quantile is below the lag: fewer than {100 - int(rest)} % of "
                "the gate values keep information that long, so a few units carry it")
    return (f"even τ's {top} quantile is below the lag: the gates forget before the output "
            "needs the information")


def probe_sentence(probe: Probe, numbers: dict | None) -> str:
    """One sentence of a boundary probe's numbers and what they mean."""
    head = f"{probe.variant} at gap {probe.gap}"
    if numbers is None:
        return (f"{head} ({probe.role}): no diagnostics recorded (run `lstmjax diagnose "
                "RUN_DIR`).")
    n = numbers
    head += f" ({probe.role}, {n['solved_seeds']}/{n['num_seeds']} seeds)"
    first, last = n["steps"]
    if first == last:
        return f"{head}: diagnostics at step {last} only (run `lstmjax diagnose RUN_DIR`)."
    lag = n["lag"]
    if lag is None:
        parts = ["dependency lag unknown (not recorded, and the task cannot be rebuilt here)"]
    elif n["gain_final"] is None:
        parts = [f"no sequence reaches the dependency lag {lag['median']} in the gradient flow"]
    else:
        g, g0 = n["gain_final"], n["gain_init"]
        at = "initialisation" if first == 0 else f"step {first}"
        if g0 is None:
            since = ""
        elif g - g0 >= MOVED:
            since = f", up from 10^{g0:.1f} at {at}"
        elif g0 - g >= MOVED:
            since = f", down from 10^{g0:.1f} at {at}"
        else:
            since = f", about the same as 10^{g0:.1f} at {at}"
        parts = [f"gain at the dependency lag (median {lag['median']} steps, 10–90 %: "
                 f"{lag['q10']}–{lag['q90']}) is 10^{g:.1f} at step {last}{since}: "
                 f"{_gain_words(g)}"]
    tau = n["tau"]
    if tau is not None and lag is not None:
        parts.append(f"keep gate {n['keep_gate']}: τ median {_fmt_tau(tau['median'])} steps "
                     f"({tau['band']}: {_fmt_tau(tau['lo'])}–{_fmt_tau(tau['hi'])}) vs the lag "
                     f"{lag['median']}: {_tau_words(tau, lag['median'], probe.role == 'solved')}")
    return f"{head}: " + "; ".join(parts) + "."


def section(trials: list[dict], frontier_rows: list[dict] | None, variants: list[str]
            ) -> list[str]:
    """report.md's "Why" section (markdown parts): a table of the boundary probes' numbers and
    one bullet per variant; [] when the run recorded no diagnostics at all."""
    if not any(t.get("diagnostics") for t in trials):
        return []
    probes = boundary_probes(trials, frontier_rows, variants)
    lines = ["| variant | probe | gap | seeds solved | dependency lag (10/50/90 %) "
             "| log10 gain at the lag: first → last step | keep gate | τ (band) at the last "
             "step | steps diagnosed |",
             "|:--|:--|--:|--:|--:|--:|:--|--:|--:|"]
    bullets: dict[str, list[str]] = {}
    for p in probes:
        n = probe_numbers(p)
        bullets.setdefault(p.variant, []).append(probe_sentence(p, n))
        if n is None:
            lines.append(f"| {p.variant} | {p.role} | {p.gap} | | | | | | none |")
            continue
        lag = n["lag"]
        lag_text = "–" if lag is None else f"{lag['q10']} / {lag['median']} / {lag['q90']}"
        gain = lambda g: "–" if g is None else f"{g:.1f}"  # noqa: E731
        tau = n["tau"]
        tau_text = "–" if tau is None else (f"{_fmt_tau(tau['median'])} ({_fmt_tau(tau['lo'])}"
                                            f"–{_fmt_tau(tau['hi'])}, {tau['band']})")
        steps = len(_by_step(p.trial["diagnostics"]))
        lines.append(f"| {p.variant} | {p.role} | {p.gap} | {n['solved_seeds']}/{n['num_seeds']} "
                     f"| {lag_text} | {gain(n['gain_init'])} → {gain(n['gain_final'])} "
                     f"| {n['keep_gate'] or '–'} | {tau_text} | {steps} |")
    for v, (largest, smallest) in boundary_gaps(trials, frontier_rows).items():
        if v in bullets and smallest is None:
            bullets[v].append(f"No unsolved gap up to {largest}: its limit is not measured yet.")
        elif v in bullets and largest is None:
            bullets[v].append(f"No gap solved, not even {smallest}.")
    missing = [v for v in variants if v not in bullets]
    intro = ("Gradient flow and gate memory at each variant's boundary: its largest solved "
             "and smallest unsolved gap (`plots/gradient_flow.png`, `plots/gates.png`). The "
             "dependency lag is how far back the information the output needs lies "
             "(`task.dependency_lags` on each seed's diagnostics batch); the gain is log10 of "
             "how much a change of the carry that many steps back reaches the last step, "
             "median over seeds; τ = -1/ln(keep gate) in steps. Thresholds for the words: "
             "`lstmjax.experiment.why`.\n")
    parts = ["## Why: at each variant's boundary\n", intro]
    if probes:
        parts.append("\n".join(lines) + "\n")
    parts.append("".join(f"- {' '.join(s)}\n" for s in bullets.values())
                 + "".join(f"- {v}: no finished probe at its boundary.\n" for v in missing))
    return parts


# ---- plots ----------------------------------------------------------------------------------
_STYLE = {"solved": "C0", "unsolved": "C3"}


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _panels(n: int, width: float = 4.4, height: float = 3.4):
    ncols = min(3, n)
    nrows = math.ceil(n / ncols)
    fig = _figure(max(6.4, width * ncols), height * nrows + 0.4)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n])


def diagnosed(probes: list[Probe]) -> list[Probe]:
    """The probes with diagnostics lines."""
    return [p for p in probes if p.trial["diagnostics"]]


def gradient_flow_plot(probes: list[Probe], cfg):
    """Per variant: log10 gain against the lag at both boundary probes, initialisation
    (dashed) and last step (solid, the seeds' range shaded), the dependency lag dotted."""
    import numpy as np

    variants = list(dict.fromkeys(p.variant for p in probes))
    fig, axes = _panels(len(variants))
    for ax, v in zip(axes, variants, strict=True):
        for p in (p for p in probes if p.variant == v):
            steps = _by_step(p.trial["diagnostics"])
            color = _STYLE[p.role]
            for step, style in ((list(steps)[0], "--"), (list(steps)[-1], "-")):
                rows = [d["gradient_flow"] for d in steps[step].values()]
                gains = np.array([[np.nan if g is None else g for g in r["log10_gain"]]
                                  for r in rows], float)
                lag = rows[0]["lag"]
                med, lo, hi = _nan_spread(gains)
                ax.plot(lag, med, ls=style, color=color, lw=1.4,
                        label=f"gap {p.gap} ({p.role}), step {step}")
                if style == "-" and len(rows) > 1:
                    ax.fill_between(lag, lo, hi, color=color, alpha=0.15, lw=0)
            n = probe_numbers(p)
            if n and n["lag"] is not None:
                ax.axvline(n["lag"]["median"], color=color, ls=":", lw=1.2)
        _label_panel(ax, v, "lag k (steps back from the last step)", "log10 gain of ∂s_T/∂s_(T-k)")
    fig.suptitle(f"{cfg.name}: gradient flow at each variant's boundary\n(median over seeds, "
                 "shaded: their range; dashed: initialisation; dotted: dependency lag)",
                 fontsize="medium")
    return fig


def has_gates(probes: list[Probe]) -> bool:
    """Whether any probe's lines carry a keep gate's τ."""
    return any(_tau(d) for p in probes for d in p.trial["diagnostics"])


def gates_plot(probes: list[Probe], cfg):
    """Per gated variant: the keep gate's τ over every recorded step at both boundary probes,
    median over seeds with the band of their 10-90 % quantiles, the dependency lag dashed."""
    probes = [p for p in probes if any(_tau(d) for d in p.trial["diagnostics"])]
    variants = list(dict.fromkeys(p.variant for p in probes))
    fig, axes = _panels(len(variants))
    from matplotlib.ticker import FuncFormatter

    for ax, v in zip(axes, variants, strict=True):
        for p in (p for p in probes if p.variant == v):
            color = _STYLE[p.role]
            series = [(step, _tau_at(lines)) for step, lines in _by_step(
                p.trial["diagnostics"]).items()]
            series = [(s, x) for s, x in series if x is not None]
            xs = [s for s, _ in series]
            cap = lambda v: min(v, 1e12)  # noqa: E731  (∞ drawn at the top)
            keep, band = series[0][1][0], series[0][1][1]["band"]
            ax.plot(xs, [cap(x[1]["median"]) for _, x in series], marker="o", ms=3,
                    color=color, label=f"gap {p.gap} ({p.role}): median τ of {keep}")
            ax.fill_between(xs, [cap(x[1]["lo"]) for _, x in series],
                            [cap(x[1]["hi"]) for _, x in series], color=color, alpha=0.15,
                            lw=0, label=f"gap {p.gap}: {band}")
            n = probe_numbers(p)
            if n and n["lag"] is not None:
                ax.axhline(n["lag"]["median"], color=color, ls="--", lw=1,
                           label=f"gap {p.gap}: dependency lag {n['lag']['median']}")
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:g}"))
        _label_panel(ax, v, "step", "memory time-scale τ (steps)")
    fig.suptitle(f"{cfg.name}: keep-gate memory time-scale τ at each variant's boundary\n"
                 "(median over seeds; band: quantiles; dashed: dependency lag)",
                 fontsize="medium")
    return fig


def _label_panel(ax, title: str, xlabel: str, ylabel: str) -> None:
    """One variant's panel of the why-plots: its title, axis labels, grid and legend."""
    ax.set_title(title, fontsize="medium")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="x-small")


def _nan_spread(a):
    """(median, min, max) over axis 0 ignoring NaN, silently (a lag no sequence reaches)."""
    import warnings

    import numpy as np

    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmedian(a, 0), np.nanmin(a, 0), np.nanmax(a, 0)
