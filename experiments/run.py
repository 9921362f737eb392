r"""Runs the studies: each run of a study as a `python -m tfcifar.train` child.

  python experiments/run.py --study=bn_lr --runs_dir=runs
  python experiments/run.py --study=all --runs_dir=runs --parallel=2 \
      --trainer_flags="--mixed_precision"
  python experiments/run.py --study=all --smoke --runs_dir=/tmp/smoke   # CPU
  python experiments/run.py --study=label_corruption --dry_run
  python experiments/run.py --study=bn_noise,augmentation --seeds=0,1,2
  python experiments/run.py --flagfile=flags/cpu_scale.cfg --runs_dir=DIR
  python experiments/run.py --study=all --seeds=0,1,2 --shard=2/4   # machine 2 of 4

Each run is
  python -m tfcifar.train --flagfile=flags/<family>.cfg <swept flags>
      [smoke flags] [--data_dir] [--trainer_flags]
      [--seed=K] --model_dir=<runs_dir>/<study>/<run>[/seed<K>]
started in the repository root (absl opens nested flagfiles relative to the
current directory), with its output in <model_dir>.log. With --seeds, every
grid point runs once per seed, each in its own seed<K> directory.

The sweep can be stopped (Ctrl-C, SIGTERM) and restarted at any time with the
same command: finished and diverged runs (status.json) are skipped, stopped
or failed ones are started again with the same command and the trainer resumes
them from their last completed epoch. A finished run with fewer epochs than
now asked for (e.g. --trainer_flags=--epochs=200) is resumed too. A diverged
run (exit 3) is a result, not a failure: the sweep goes on. Exit code: 0 when
every run finished or diverged, 1 when one failed, 2 for bad flags, 130 when
stopped.
"""

import collections
import dataclasses
import fnmatch
import os
import shlex
import signal
import subprocess
import sys
import threading
import time

if __package__ in (None, ""):  # run as a script: make `experiments` importable
  sys.path.insert(
      0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402

from experiments import cli  # noqa: E402
from experiments import studies as studies_lib  # noqa: E402
from tfcifar import run_dir as run_dir_lib  # noqa: E402
from tfcifar.run_dir import EXIT_DIVERGED  # noqa: E402
from tfcifar.run_dir import EXIT_FAILED  # noqa: E402
from tfcifar.run_dir import EXIT_OK  # noqa: E402
from tfcifar.run_dir import EXIT_USAGE  # noqa: E402,F401
from tfcifar import config as config_lib  # noqa: E402

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXIT_STOPPED = 130
DONE_STATUSES = ("finished", "diverged")

FLAGS = flags.FLAGS



# --- commands ----------------------------------------------------------------


def trainer_command(trainer=""):
  return shlex.split(trainer) if trainer else [sys.executable, "-m",
                                              "tfcifar.train"]


def run_dir(runs_dir, run, seed=None):
  """<runs_dir>/<study>/<run>, or .../<run>/seed<K> for a run of --seeds."""
  path = os.path.join(runs_dir, run.study, run.name)
  return path if seed is None else os.path.join(path, f"seed{seed}")


def run_args(study, run, runs_dir, smoke=False, data_dir="", extra=(),
             seed=None):
  """The trainer flags of `run` (without the trainer command itself)."""
  args = [f"--flagfile={study.flagfile}", *run.flags]
  if smoke:
    args += studies_lib.SMOKE_FLAGS
  if data_dir:
    args.append(f"--data_dir={data_dir}")
  args += list(extra)
  if seed is not None:
    args.append(f"--seed={seed}")
  args.append(f"--model_dir={run_dir(runs_dir, run, seed)}")
  return args


def expand_flagfiles(args, cwd):
  """`args` with every --flagfile=PATH replaced by its lines (absl's reader,
  paths relative to `cwd` as the trainer started there opens them)."""
  old = os.getcwd()
  os.chdir(cwd)
  try:
    return flags.FlagValues().read_flags_from_files(list(args),
                                                    force_gnu=True)
  except flags.Error as e:
    raise cli.UsageError(f"{e} (run from a checkout of the repository)"
                         ) from None
  finally:
    os.chdir(old)


def _integer(value, name):
  """int(value) (None stays None), else a one-line UsageError."""
  try:
    return int(value) if value is not None else None
  except ValueError:
    raise cli.UsageError(f"--{name}={value} is not an integer (in "
                         "--trainer_flags or a flagfile)") from None


def flag_value(args, name):
  """The last value of --name=VALUE in (expanded) `args`, or None."""
  value = None
  for arg in args:
    if arg.startswith(f"--{name}="):
      value = arg.split("=", 1)[1]
  return value


# --- the state of a run on disk ----------------------------------------------


def read_status(model_dir):
  """status.json of a run, {} when absent or unreadable (a fresh run)."""
  return run_dir_lib.RunDir(model_dir).read_status()


def is_done(status, epochs):
  """Finished with at least `epochs` epochs (None: any), or diverged."""
  if status.get("status") == "diverged":
    return True
  if status.get("status") != "finished":
    return False
  return epochs is None or int(status.get("epoch", 0)) >= epochs


@dataclasses.dataclass
class Job:
  """One run of the sweep and what became of it."""
  run: studies_lib.Run
  key: str                    # <study>/<run>[/seed<K>]
  model_dir: str
  command: list
  log_path: str
  epochs: int = None
  result: str = "pending"     # pending|skipped|finished|diverged|failed|stopped
  note: str = ""
  process: subprocess.Popen = None
  started: float = 0.0
  last_lines: collections.deque = dataclasses.field(
      default_factory=lambda: collections.deque(maxlen=20))
  reader: threading.Thread = None


def parse_shard(text):
  """'I/N' (1 <= I <= N) -> (I, N); '' -> (1, 1); UsageError otherwise."""
  if not text:
    return 1, 1
  index, _, count = text.partition("/")
  if not (index.isdigit() and count.isdigit() and
          1 <= int(index) <= int(count)):
    raise cli.UsageError(f"--shard={text}: expected I/N with 1 <= I <= N, "
                         "e.g. 1/4")
  return int(index), int(count)


def shard(jobs, index, count):
  """Every `count`-th job starting with the `index`-th (1-based): N machines
  with --shard=1/N ... N/N run each job of a sweep exactly once."""
  return jobs[index - 1::count]


def check_extra_flags(args, source, forbid_seed):
  """UsageError if trainer flags from `source` set what the runner sets per
  run: --model_dir always, --seed when `forbid_seed` (with --seeds)."""
  if any(a.startswith("--model_dir") for a in args):
    raise cli.UsageError(f"{source} must not set --model_dir (the runner "
                         "sets it per run)")
  if forbid_seed and any(a.startswith("--seed=") for a in args):
    raise cli.UsageError(f"{source} must not set --seed (the runner sets it "
                         "per run)")


def parse_study_flags(values, study_names):
  """['STUDY:FLAGS', ...] -> {study: [flag, ...]}; UsageError for an unknown
  study, a missing ':' or flags that set --model_dir/--seed."""
  per_study = collections.defaultdict(list)
  for value in values:
    study, sep, text = value.partition(":")
    if not sep or study not in study_names:
      raise cli.UsageError(
          f"--study_flags={value}: expected STUDY:FLAGS with STUDY one of "
          f"{', '.join(study_names)}, e.g. 'bn_noise:--epochs=50'")
    try:
      args = shlex.split(text)
    except ValueError as e:
      raise cli.UsageError(f"--study_flags={value}: {e}") from None
    check_extra_flags(args, f"--study_flags={value}", forbid_seed=True)
    per_study[study] += args
  return dict(per_study)


def make_jobs(study_names, runs_dir, smoke=False, data_dir="", trainer="",
              trainer_flags="", patterns=(), seeds=(), study_flags=None):
  """The jobs of the selected studies and runs, in study order; with
  `seeds`, one job per run and seed (seed-major within a study, so that a
  stopped sweep has whole seeds done). `study_flags` ({study: [flag]}) are
  appended after `trainer_flags` to that study's runs only."""
  jobs = []
  for study in study_names:
    extra = shlex.split(trainer_flags) + (study_flags or {}).get(study.name,
                                                                 [])
    for seed in (list(seeds) or [None]):
      for run in study.runs:
        if patterns and not any(fnmatch.fnmatch(run.key, p)
                                for p in patterns):
          continue
        args = run_args(study, run, runs_dir, smoke, data_dir, extra, seed)
        epochs = flag_value(expand_flagfiles(args, REPO_ROOT), "epochs")
        model_dir = run_dir(runs_dir, run, seed)
        jobs.append(Job(
            run=run, model_dir=model_dir,
            key=run.key if seed is None else f"{run.key}/seed{seed}",
            command=trainer_command(trainer) + args,
            log_path=model_dir + ".log",
            epochs=_integer(epochs, "epochs")))
  if patterns and not jobs:
    raise cli.UsageError(f"--runs={','.join(patterns)} matches no run of "
                         f"{', '.join(s.name for s in study_names)}")
  return jobs


# --- running -----------------------------------------------------------------


class Sweep:
  """Runs jobs, `parallel` at a time, until done or stopped."""

  def __init__(self, jobs, parallel=1, stop_grace_s=60.0, echo=None,
               poll_s=0.1, log=None):
    self.jobs = jobs
    self.parallel = max(1, parallel)
    self.stop_grace_s = stop_grace_s
    self.echo = self.parallel == 1 if echo is None else echo
    self.poll_s = poll_s
    self.log = log or (lambda text: print(text, flush=True))
    self.stopping = False
    self.stop_time = None

  def stop(self, signum=None, frame=None):  # pylint: disable=unused-argument
    """Stops the sweep: no new runs, SIGINT to the running ones."""
    if not self.stopping:
      self.log("stopping: waiting for the running trainers to exit "
               "(run the same command again to continue)")
    self.stopping = True
    self.stop_time = self.stop_time or time.monotonic()
    for job in self.running():
      _signal_group(job.process, signal.SIGINT)

  def running(self):
    return [j for j in self.jobs if j.process and j.process.poll() is None
            and j.result == "running"]

  def run(self):
    for job in self.jobs:
      if is_done(read_status(job.model_dir), job.epochs):
        job.result = "skipped"
    todo = collections.deque(j for j in self.jobs if j.result == "pending")
    total = len(todo)
    active = []
    while (todo and not self.stopping) or active:
      while todo and len(active) < self.parallel and not self.stopping:
        job = todo.popleft()
        self._start(job, total - len(todo), total)
        active.append(job)
      time.sleep(self.poll_s)
      for job in list(active):
        if job.process.poll() is not None:
          self._finish(job)
          active.remove(job)
      if self.stopping and active and (
          time.monotonic() - self.stop_time > self.stop_grace_s):
        for job in active:
          _signal_group(job.process, signal.SIGKILL)
    for job in todo:
      job.result = "not started"
    return self.jobs

  def _start(self, job, index, total):
    os.makedirs(os.path.dirname(job.log_path), exist_ok=True)
    resumed = " (resuming)" if read_status(job.model_dir) else ""
    self.log(f"[{index}/{total}] {job.key}: started{resumed}, log in "
             f"{job.log_path}")
    log_file = open(job.log_path, "a")
    log_file.write(f"$ cd {REPO_ROOT} && {shlex.join(job.command)}\n")
    log_file.flush()
    env = dict(os.environ)
    if self.parallel > 1:  # several TF processes may share one GPU
      env.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")
    job.process = subprocess.Popen(
        job.command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        start_new_session=True)  # Ctrl-C reaches the runner, which forwards it
    job.started = time.monotonic()
    job.result = "running"
    job.reader = threading.Thread(
        target=_copy_output, args=(job, log_file, self.echo), daemon=True)
    job.reader.start()

  def _finish(self, job):
    code = job.process.returncode
    job.reader.join(timeout=10)
    status = read_status(job.model_dir)
    minutes = (time.monotonic() - job.started) / 60
    if code == EXIT_OK:
      job.result = "finished"
    elif code == EXIT_DIVERGED:
      job.result = "diverged"
    elif self.stopping:
      job.result = "stopped"
    else:
      job.result = "failed"
      job.note = f"exit {code}: {_last_error(job.last_lines)}"
    self.log(f"{job.key}: {job.result} after {minutes:.1f} min "
             f"({_describe(status)}){' ' + job.note if job.note else ''}")


def _signal_group(process, signum):
  try:
    os.killpg(process.pid, signum)
  except (ProcessLookupError, PermissionError):
    pass


def _copy_output(job, log_file, echo):
  """Copies the trainer's output to its log (and the terminal), line by line."""
  with log_file:
    for raw in iter(job.process.stdout.readline, b""):
      line = raw.decode("utf-8", "replace")
      log_file.write(line)
      log_file.flush()
      job.last_lines.append(line.rstrip("\n"))
      if echo:
        sys.stdout.write(f"  {line}")
        sys.stdout.flush()
  job.process.stdout.close()


def _last_error(lines):
  """The trainer's `error: ...` line, else its last non-empty line."""
  lines = [l for l in lines if l.strip()]
  errors = [l for l in lines if l.startswith("error:")]
  return (errors or lines or ["no output"])[-1].strip()


def _describe(status):
  """`epoch 12, test accuracy 0.8312` from a status.json dict."""
  if not status:
    return "no status.json"
  text = f"epoch {status.get('epoch', 0)}"
  accuracy = (status.get("metrics") or {}).get("test_accuracy")
  if isinstance(accuracy, (int, float)):
    text += f", test accuracy {accuracy:.4f}"
  if status.get("status") == "diverged":
    text += f", diverged in epoch {status.get('diverged_epoch', '?')}"
  return text


def summary_lines(jobs):
  """One line per run: key, result (as on disk for skipped runs), numbers."""
  width = max([len(j.key) for j in jobs] + [3])
  lines = []
  for job in jobs:
    status = read_status(job.model_dir)
    result = job.result
    if result == "skipped":
      result = f"{status.get('status', '?')} (earlier)"
    note = f"  {job.note}" if job.note else ""
    lines.append(f"{job.key:<{width}}  {result:<18} {_describe(status)}"
                 f"{note}")
  return lines


def exit_code(jobs):
  results = {j.result for j in jobs}
  if results & {"stopped", "not started"}:
    return EXIT_STOPPED
  if "failed" in results:
    return EXIT_FAILED
  return EXIT_OK


def dry_run_lines(jobs):
  lines = []
  epochs = 0
  for job in jobs:
    status = read_status(job.model_dir)
    done = is_done(status, job.epochs)
    state = "done" if done else ("resume" if status else "new")
    if not done:
      epochs += max(0, (job.epochs or 0) - int(status.get("epoch", 0)))
    lines.append(f"{job.key} [{state}]: {shlex.join(job.command)}")
  lines.append(f"{len(jobs)} runs, {sum(1 for l in lines if '[done]' in l)} "
               f"done, {epochs} epochs to train")
  return lines


# --- main --------------------------------------------------------------------


def main(argv):
  if len(argv) > 1:
    raise cli.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  if not FLAGS.study:
    raise cli.UsageError(f"--study is required: one or more of "
                         f"{', '.join(sorted(studies_lib.STUDIES))}, or all")
  try:
    seeds = [int(s) for s in FLAGS.seeds]
  except ValueError:
    raise cli.UsageError(f"--seeds={','.join(FLAGS.seeds)}: expected "
                         "integers such as 0,1,2") from None
  if len(set(seeds)) != len(seeds):
    raise cli.UsageError(f"--seeds={','.join(FLAGS.seeds)} repeats a seed")
  if FLAGS.parallel < 1:
    raise cli.UsageError(f"--parallel must be >= 1, got {FLAGS.parallel}")
  runs_dir = os.path.abspath(FLAGS.runs_dir)
  data_dir = os.path.abspath(FLAGS.data_dir) if FLAGS.data_dir else ""
  if data_dir and not os.path.isdir(data_dir):
    raise cli.UsageError(f"--data_dir={FLAGS.data_dir} is not a directory")
  try:
    trainer_flags = shlex.split(FLAGS.trainer_flags)
  except ValueError as e:
    raise cli.UsageError(f"--trainer_flags: {e}") from None
  check_extra_flags(trainer_flags, "--trainer_flags", forbid_seed=bool(seeds))
  shard_index, shard_count = parse_shard(FLAGS.shard)
  study_flags = parse_study_flags(FLAGS.study_flags, list(studies_lib.STUDIES))
  jobs = shard(make_jobs(studies_lib.select(FLAGS.study), runs_dir,
                         FLAGS.smoke, data_dir, FLAGS.trainer,
                         FLAGS.trainer_flags, FLAGS.runs, seeds, study_flags),
               shard_index, shard_count)
  if FLAGS.dry_run:
    print("\n".join(dry_run_lines(jobs)))
    return EXIT_OK
  sweep = Sweep(jobs, FLAGS.parallel, FLAGS.stop_grace_s)
  signal.signal(signal.SIGINT, sweep.stop)
  signal.signal(signal.SIGTERM, sweep.stop)
  sweep.run()
  print("\n".join(["", f"summary ({runs_dir}):"] + summary_lines(jobs)))
  return exit_code(jobs)


def define_flags():
  """Defines the flags (only when run as a script: tests import this module
  next to the trainer, whose flags share names)."""
  flags.DEFINE_list("study", [], "The studies to run (comma-separated: "
                    f"{', '.join(studies_lib.STUDIES)}), or all.")
  flags.DEFINE_list("seeds", [], "Run every grid point once per seed, in "
                    "<run>/seed<K> (e.g. 0,1,2); default: once, with the "
                    "flagfile's --seed, in <run>.")
  config_lib.define_path_flag("runs_dir", "runs",
                              "Runs go to <runs_dir>/<study>/<run>.")
  config_lib.define_path_flag("data_dir", "", "Passed to the trainer as --data_dir "
                              "(default: the trainer's: the standard location if "
                              "converted data is there, else the bundled sample).")
  flags.DEFINE_boolean("smoke", False, "Tiny scale (a small VGG, a few hundred "
                       "images, 2 epochs): every study on a CPU in minutes.")
  flags.DEFINE_integer("parallel", 1, "Runs trained at the same time (they "
                       "share the GPU: each process allocates GPU memory as "
                       "it needs it, TF_FORCE_GPU_ALLOW_GROWTH).")
  flags.DEFINE_string("shard", "", "I/N: run only every N-th run of the "
                      "sweep, starting with the I-th (1-based), so that N "
                      "machines sharing --runs_dir (or merging it later) "
                      "split one sweep.")
  flags.DEFINE_boolean("dry_run", False, "Print the runs and their commands, "
                       "run nothing.")
  flags.DEFINE_list("runs", [], "Only the runs whose <study>/<run> matches one "
                    "of these glob patterns, e.g. 'bn_lr/bn-*,*/aug'.")
  flags.DEFINE_string("trainer_flags", "", "More trainer flags, appended to "
                      "every run (they win), e.g. '--epochs=10 "
                      "--mixed_precision'.")
  flags.DEFINE_multi_string("study_flags", [], "STUDY:FLAGS: more trainer "
                            "flags for one study's runs only, after "
                            "--trainer_flags (they win), e.g. "
                            "'bn_noise:--epochs=50'. Repeatable.")
  flags.DEFINE_float("stop_grace_s", 60.0, "On Ctrl-C/SIGTERM, seconds a run "
                     "gets to exit after SIGINT before it is killed.")
  flags.DEFINE_string("trainer", "", "(testing) The command run instead of "
                      "`python -m tfcifar.train`, split like a shell would.")


if __name__ == "__main__":
  define_flags()
  cli.run(main)
