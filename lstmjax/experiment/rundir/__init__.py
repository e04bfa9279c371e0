"""The run directory's layout, and reading and writing what is in it -- safely.

    RUN_DIR/
      config.yaml              the resolved experiment config (sweep included)
      .lstmjax.lock            while a run is writing: its process (pid, host, start, token)
      <trial>/config.yaml      the trial's own config (no sweep)
      <trial>/metrics.jsonl    one line per (evaluation, active seed)
      <trial>/checkpoints/     orbax checkpoints of the vmapped train state, by step
      <trial>/checksums.json   SHA-256 of every file of every checkpoint, by step
      <trial>/diagnostics.jsonl  gradient flow and gate statistics (with `diagnostics:`)
      <trial>/summary.json     the trial's TrialSummary; its presence marks the trial finished
      results.csv, report.md, plots/   written by lstmjax.experiment.report
      tensorboard/<trial>/seed-<s>/, wandb/   with output.loggers (lstmjax.experiment.loggers)
      optuna.db                the study of a `sweep.method: optuna` search (SQLite;
                               lstmjax.experiment.search)
      frontier.csv             a gap frontier's answer per variant (written by the report)
      .lstmjax-process-<I>.json   process I of several is done (lstmjax.experiment.hosts)

The package: :mod:`.layout` (every name above, :class:`TrialState`, the errors),
:mod:`.files` (configs, the plan before writing, JSONL, summaries, failures), :mod:`.lock`
(:class:`RunLock`) and :mod:`.checkpoints` (:class:`Checkpointer`); ``from
lstmjax.experiment.rundir import X`` finds them all. Training
(:mod:`lstmjax.experiment.executor`) and the report (tables, plots) both go through it;
neither imports the other. Rules that keep a run directory intact, whatever the user points at:

* every file is replaced atomically (:mod:`lstmjax._io`), with the umask's permissions;
* nothing is written before every check has passed (:func:`plan_run`): a directory that is not
  a run directory is never resumed into, and a resume whose config differs from what the
  directory (or any of its trials) stores is refused;
* nothing is written or deleted through a symbolic link inside the run directory;
* only files the run creates are ever deleted (its own temporaries and orbax checkpoints);
* one process at a time (:class:`RunLock`); a stale lock of a dead process is taken over.
"""


from lstmjax.experiment.rundir.checkpoints import Checkpointer
from lstmjax.experiment.rundir.files import (
    _first_difference,
    _normalised,
    check_no_links,
    check_same_config,
    clear_failure,
    load_run_config,
    plan_run,
    plan_trials,
    prepare,
    raised_budget,
    read_diagnostics,
    read_failure,
    read_finished,
    read_jsonl,
    read_metrics,
    read_summary,
    read_yaml,
    stored_steps,
    write_config,
    write_diagnostics,
    write_failure,
    write_jsonl,
    write_metrics,
    write_summary,
)
from lstmjax.experiment.rundir.layout import (
    CHECKPOINT_DIR,
    CHECKSUM_FILE,
    CONFIG_FILE,
    DIAGNOSTICS_FILE,
    FAILED_FILE,
    FRONTIER_FILE,
    LOCK_FILE,
    METRICS_FILE,
    PLOTS_DIR,
    PROCESS_MARKER,
    REPORT_FILE,
    RESULTS_FILE,
    RUN_FILES,
    STUDY_FILE,
    SUMMARY_FILE,
    TENSORBOARD_DIR,
    TRIAL_FILES,
    WANDB_DIR,
    DamagedFile,
    RunError,
    TrialState,
    run_dir_for,
    warn,
)
from lstmjax.experiment.rundir.lock import RunLock

__all__ = [
    "CONFIG_FILE", "METRICS_FILE", "DIAGNOSTICS_FILE", "SUMMARY_FILE", "CHECKPOINT_DIR",
    "CHECKSUM_FILE", "RESULTS_FILE", "REPORT_FILE", "PLOTS_DIR", "LOCK_FILE", "WANDB_DIR",
    "TENSORBOARD_DIR", "FRONTIER_FILE", "STUDY_FILE", "PROCESS_MARKER", "RUN_FILES",
    "TRIAL_FILES", "FAILED_FILE", "TrialState",
    "RunError", "DamagedFile", "Checkpointer", "RunLock", "run_dir_for", "read_yaml",
    "write_config", "check_same_config", "raised_budget", "stored_steps", "check_no_links",
    "plan_run", "plan_trials", "prepare",
    "read_jsonl", "write_jsonl", "read_metrics", "write_metrics", "read_diagnostics",
    "write_diagnostics", "read_summary", "read_finished", "write_summary", "load_run_config",
    "warn", "write_failure", "read_failure", "clear_failure",
    "_first_difference", "_normalised",  # (private: the optuna study's config check)
]  # fmt: skip
