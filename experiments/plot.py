r"""Draws the figures of the studies and a summary table from their runs.

  python experiments/plot.py --runs_dir=runs --out_dir=figures --format=png,svg

Reads <runs_dir>/<study>/<run>/metrics.csv (one row per completed epoch) and
status.json, or, for a sweep with --seeds, those of <run>/seed<K>/ (drawn as
the mean over seeds with a band of +-1 std), and writes to <out_dir>:
  <study>.<fmt>                       train loss, train accuracy and test
                                      accuracy against epoch, one line per run
  bn_noise_activations.<fmt>          the distribution (percentile bands) of
                                      two layers' post-BN activations over
                                      training, BN / noisy BN / no BN (from
                                      the runs' activations.csv, --histograms)
  summary_train_accuracy.<fmt>        clean, random labels p=0.5 and p=1,
  summary_test_accuracy.<fmt>         shuffled/random pixels, gaussian
  summary.md                          final and best numbers of every run
                                      (mean +- std over seeds), and the
                                      studies' claims judged (verify.py)
A diverged run is drawn dashed, ending in an x, "(diverged in epoch k)" in
its legend. Studies without runs are left out.
"""

import dataclasses
import json
import math
import os
import sys

if __package__ in (None, ""):  # run as a script: make `experiments` importable
  sys.path.insert(
      0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import matplotlib  # noqa: E402

matplotlib.use("Agg")

from absl import flags  # noqa: E402
from matplotlib import figure as figure_lib  # noqa: E402
from matplotlib import ticker  # noqa: E402

from experiments import claims as claims_lib  # noqa: E402
from experiments import cli  # noqa: E402
from experiments import studies as studies_lib  # noqa: E402
from tfcifar import run_dir as run_dir_lib  # noqa: E402
from tfcifar import config as config_lib  # noqa: E402

STUDY_PANELS = (("train_loss", "train loss"),
                ("train_accuracy", "train accuracy"),
                ("test_accuracy", "test accuracy"))
SUMMARY_PANELS = (("train_accuracy", "train accuracy"),
                  ("test_accuracy", "test accuracy"))
FORMATS = ("png", "svg", "pdf")
REFERENCE_COLOR = "0.6"
SEED_DIR_PREFIX = "seed"
METRIC_COLUMNS = ("train_loss", "train_accuracy", "test_loss",
                  "test_accuracy", "lr", "seconds")

FLAGS = flags.FLAGS



# --- reading runs ------------------------------------------------------------


@dataclasses.dataclass
class RunData:
  """The metrics of one run directory, or the mean over a run's seeds."""
  key: str
  label: str
  rows: list      # [{"epoch": int, "train_loss": float, ...}], by epoch
  status: dict    # status.json ({} when absent)
  std_rows: list = None   # per-epoch std over seeds (seeded runs)
  seeds: list = dataclasses.field(default_factory=list)  # per-seed RunData
  activations: list = dataclasses.field(default_factory=list)

  @property
  def num_seeds(self):
    return len(self.seeds) or 1

  def band(self, metric):
    """(epochs, std over seeds) of `metric`, or None for a single run."""
    if not self.std_rows:
      return None
    return ([r["epoch"] for r in self.std_rows],
            [r.get(metric, math.nan) for r in self.std_rows])

  def final(self, metric):
    """`metric` in the last epoch (the seeds' mean), None without rows."""
    return self.rows[-1].get(metric) if self.rows else None

  @property
  def state(self):
    return self.status.get("status", "running" if self.rows else "empty")

  @property
  def diverged(self):
    return self.state == "diverged"

  def series(self, metric):
    """(epochs, values) of `metric`."""
    return ([r["epoch"] for r in self.rows],
            [r.get(metric, math.nan) for r in self.rows])

  def legend(self, label=None):
    label = label or self.label
    if self.seeds:
      label = f"{label} ({len(self.seeds)} seeds)"
    if self.diverged:
      epoch = self.status.get("diverged_epoch", "?")
      return f"{label} (diverged in epoch {epoch})"
    if self.state in ("failed", "running"):
      return f"{label} ({self.state}, epoch {self.last_epoch})"
    return label

  @property
  def last_epoch(self):
    return self.rows[-1]["epoch"] if self.rows else 0


def read_metrics(path):
  """metrics.csv as rows of floats (epoch an int), sorted by epoch."""
  return sorted(run_dir_lib.read_csv_rows(path), key=lambda r: r["epoch"])


def read_run(path, key, label):
  """The RunData of a run directory, or None when it has no metrics/status."""
  metrics = os.path.join(path, run_dir_lib.METRICS_FILENAME)
  status_path = os.path.join(path, run_dir_lib.STATUS_FILENAME)
  if not os.path.exists(metrics) and not os.path.exists(status_path):
    return None
  rows = read_metrics(metrics)
  status = {}
  if os.path.exists(status_path):
    try:
      with open(status_path) as f:
        status = json.load(f)
    except ValueError:
      raise cli.UsageError(f"{status_path} is not valid JSON") from None
  return RunData(key, label, rows, status,
                 activations=run_dir_lib.read_csv_rows(
                     os.path.join(path, run_dir_lib.ACTIVATIONS_FILENAME)))


def seed_dirs(path):
  """[(seed, <path>/seed<K>)] sorted by seed: the runs of --seeds."""
  if not os.path.isdir(path):
    return []
  found = []
  for name in os.listdir(path):
    number = name[len(SEED_DIR_PREFIX):]
    if name.startswith(SEED_DIR_PREFIX) and number.isdigit():
      found.append((int(number), os.path.join(path, name)))
  return sorted(found)


def mean_over_seeds(key, label, seeds):
  """One RunData: per-epoch mean (rows) and std (std_rows) of `seeds` over
  the epochs every seed completed. Diverged if any seed diverged, finished
  if all finished, else the first other state."""
  last = min(run.last_epoch for run in seeds)
  rows, std_rows = [], []
  for epoch in range(1, last + 1):
    per_seed = [next(r for r in run.rows if r["epoch"] == epoch)
                for run in seeds]
    mean, std = {"epoch": epoch}, {"epoch": epoch}
    for column in METRIC_COLUMNS:
      values = [r.get(column, math.nan) for r in per_seed]
      mean[column] = sum(values) / len(values)
      std[column] = math.sqrt(sum((v - mean[column]) ** 2 for v in values)
                              / len(values))
    rows.append(mean)
    std_rows.append(std)
  states = [run.state for run in seeds]
  diverged = [run for run in seeds if run.diverged]
  if diverged:
    status = dict(diverged[0].status)
  elif all(s == "finished" for s in states):
    status = {"status": "finished", "epoch": last}
  else:
    status = {"status": next(s for s in states if s != "finished"),
              "epoch": last}
  return RunData(key, label, rows, status, std_rows=std_rows, seeds=seeds,
                 activations=seeds[0].activations)


def load_runs(runs_dir):
  """{run key: RunData} of every run of every study found under runs_dir
  (a run of --seeds as the mean over its seed<K> directories)."""
  if not os.path.isdir(runs_dir):
    raise cli.UsageError(f"--runs_dir={runs_dir} is not a directory")
  runs = {}
  for key, label in studies_lib.run_labels().items():
    path = os.path.join(runs_dir, key)
    data = read_run(path, key, label)
    if data is None:
      seeds = [read_run(p, f"{key}/seed{s}", label)
               for s, p in seed_dirs(path)]
      seeds = [s for s in seeds if s is not None]
      data = mean_over_seeds(key, label, seeds) if seeds else None
    if data is not None:
      runs[key] = data
  return runs


# --- figures -----------------------------------------------------------------


def colors(count):
  """`count` distinct colours: tab10, or viridis beyond 10."""
  from matplotlib import colormaps  # pylint: disable=g-import-not-at-top
  if count <= 10:
    return [colormaps["tab10"](i) for i in range(count)]
  return [colormaps["viridis"](i / max(1, count - 1)) for i in range(count)]


def draw_run(ax, run, metric, color, label=None, linestyle="-"):
  """One line: `linestyle`, or dashed ending in an x for a diverged run."""
  epochs, values = run.series(metric)
  style = {"linestyle": linestyle}
  if run.diverged:
    style = dict(linestyle="--", marker="x", markersize=8,
                 markevery=[len(epochs) - 1] if epochs else None)
  (line,) = ax.plot(epochs, values, color=color, label=run.legend(label),
                    **style)
  band = run.band(metric)
  if band is not None:
    low = [v - s for v, s in zip(values, band[1])]
    high = [v + s for v, s in zip(values, band[1])]
    ax.fill_between(band[0], low, high, color=color, alpha=0.2, linewidth=0)
  return line


def line_styles(runs):
  """(colour, linestyle) per Run, from its `style` (colour index) or order."""
  styles = [dict(run.style) for run in runs]
  indices = [s.get("color", i) for i, s in enumerate(styles)]
  palette = colors(max(indices) + 1 if indices else 0)
  return [(palette[i], s.get("linestyle", "-"))
          for i, s in zip(indices, styles)]


def panels_figure(lines, panels, title):
  """A Figure with one axis per (metric, name) panel.

  Args:
    lines: [(RunData, label or None, colour, linestyle)] in legend order.
    panels: [(metric, axis title)].
    title: the figure title.
  """
  fig = figure_lib.Figure(figsize=(5 * len(panels) + 2.5, 4),
                          layout="constrained")
  axes = fig.subplots(1, len(panels), squeeze=False)[0]
  for ax, (metric, name) in zip(axes, panels):
    for run, label, color, linestyle in lines:
      draw_run(ax, run, metric, color, label, linestyle)
    ax.set_title(name)
    ax.set_xlabel("epoch")
    ax.set_ylabel(name.split()[-1])
    ax.grid(alpha=0.3)
    ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
    if metric.endswith("loss") and _spans_decades(lines, metric):
      ax.set_yscale("log")
  fig.legend(*axes[0].get_legend_handles_labels(), loc="outside right upper",
             fontsize="small")
  fig.suptitle(title)
  return fig


def _spans_decades(lines, metric):
  """True when the positive values of `metric` span more than 10x (log axis)."""
  values = [v for run, _, _, _ in lines for v in run.series(metric)[1]
            if math.isfinite(v)]
  return bool(values) and min(values) > 0 and max(values) > 10 * min(values)


def study_figure(study, runs):
  """The figure of `study` from {key: RunData}, or None if it has no runs.

  One line per run of the study that has data, in the study's order, then its
  reference runs (grey) where they exist.
  """
  present = [r for r in study.runs if r.key in runs]
  if not present:
    return None
  lines = [(runs[r.key], None, color, linestyle)
           for r, (color, linestyle) in zip(present, line_styles(present))]
  lines += [(runs[key], f"{label} (reference)", REFERENCE_COLOR, "-")
            for key, label in study.references if key in runs]
  return panels_figure(lines, STUDY_PANELS, study.title)


def summary_figure(runs, metric, name):
  """One metric of the summary runs (clean and corrupted), or None."""
  present = [(runs[key], label) for key, label in studies_lib.SUMMARY_RUNS
             if key in runs]
  if not present:
    return None
  lines = [(run, label, c, "-")
           for (run, label), c in zip(present, colors(len(present)))]
  return panels_figure(lines, [(metric, name)], "Corrupted labels and images")


# Santurkar et al. 2018, Fig. 2 and 7, show layers #3 and #11 of their VGG:
# conv2_1 and conv5_1 of the VGG-16 stack.
ACTIVATION_LAYERS = ("conv2_1", "conv5_1")
ACTIVATION_BANDS = (("p5", "p95", 0.15), ("p25", "p75", 0.35))


def activation_layers(runs):
  """The layers to draw: ACTIVATION_LAYERS where logged, else the first and
  last layer the runs logged."""
  logged = [r["layer"] for run in runs for r in run.activations]
  layers = [l for l in ACTIVATION_LAYERS if l in logged]
  if layers:
    return layers
  ordered = list(dict.fromkeys(logged))
  return ordered[:1] + ordered[-1:] if len(ordered) > 1 else ordered


def activations_figure(runs):
  """bn_noise: percentile bands (5-95, 25-75) and the median of two layers'
  post-BN (pre-ReLU) activations per epoch, one column per run (BN, noisy BN,
  no BN), from activations.csv (first seed); None without such data."""
  present = [runs[r.key] for r in studies_lib.STUDIES["bn_noise"].runs
             if r.key in runs and runs[r.key].activations]
  layers = activation_layers(present)
  if not present or not layers:
    return None
  fig = figure_lib.Figure(figsize=(4.5 * len(present), 3.2 * len(layers)),
                          layout="constrained")
  axes = fig.subplots(len(layers), len(present), squeeze=False,
                      sharey="row")
  for column, (run, color) in enumerate(zip(present, colors(len(present)))):
    for row, layer in enumerate(layers):
      ax = axes[row][column]
      rows = [r for r in run.activations if r["layer"] == layer]
      epochs = [r["epoch"] for r in rows]
      for low, high, alpha in ACTIVATION_BANDS:
        ax.fill_between(epochs, [r[low] for r in rows],
                        [r[high] for r in rows], color=color, alpha=alpha,
                        linewidth=0, label=f"{low[1:]}-{high[1:]}%")
      ax.plot(epochs, [r["p50"] for r in rows], color=color, label="median")
      ax.set_title(f"{run.label}: {layer}")
      ax.set_xlabel("epoch")
      ax.grid(alpha=0.3)
      ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
    axes[0][column].legend(fontsize="small")
  for row, layer in enumerate(layers):
    axes[row][0].set_ylabel("activation (pre-ReLU)")
  fig.suptitle("Distribution of post-BatchNorm activations over training "
               "(a fixed train batch, training mode)")
  return fig


def save_figure(fig, out_dir, stem, formats):
  """Writes `<out_dir>/<stem>.<fmt>` for each format via a temporary name."""
  paths = []
  for fmt in formats:
    path = os.path.join(out_dir, f"{stem}.{fmt}")
    tmp = f"{path}.tmp-{os.getpid()}"
    fig.savefig(tmp, format=fmt, dpi=120)
    os.replace(tmp, path)
    paths.append(path)
  return paths


# --- the table ---------------------------------------------------------------


def _percent(value, std=None):
  if value is None or math.isnan(value):
    return ""
  return f"{100 * value:.2f}" + (f" ± {100 * std:.2f}" if std is not None
                                   else "")


def _loss(value, std=None):
  if value is None or math.isnan(value):
    return ""
  return f"{value:.4f}" + (f" ± {std:.4f}" if std is not None else "")


def best(run, metric):
  """(best value, its epoch) of an accuracy, or (None, None)."""
  rows = [r for r in run.rows if not math.isnan(r.get(metric, math.nan))]
  if not rows:
    return None, None
  row = max(rows, key=lambda r: r[metric])
  return row[metric], row["epoch"]


def summary_table(runs):
  """Markdown: per study, one row of final and best numbers per run."""
  out = ["# Summary", "",
         "Accuracies in %; final = the last completed epoch; runs of several "
         "seeds: mean ± std over the seeds (population std), best = the best "
         "epoch of the mean curve.", ""]
  for study in studies_lib.STUDIES.values():
    present = [runs[r.key] for r in study.runs if r.key in runs]
    if not present:
      continue
    out += [f"## {study.title} (`{study.name}`)", "",
            "| run | status | seeds | epochs | final train loss | "
            "final train acc | final test acc | best test acc (epoch) |",
            "|---|---|---:|---:|---:|---:|---:|---:|"]
    for run in present:
      last = run.rows[-1] if run.rows else {}
      spread = (run.std_rows[-1] if run.std_rows and len(run.seeds) > 1
                else {})
      value, epoch = best(run, "test_accuracy")
      best_text = f"{_percent(value)} ({epoch})" if value is not None else ""
      state = run.state
      if run.diverged:
        state = f"diverged (epoch {run.status.get('diverged_epoch', '?')})"
      out.append(
          f"| {run.label} | {state} | {run.num_seeds} | {run.last_epoch} | "
          f"{_loss(last.get('train_loss'), spread.get('train_loss'))} | "
          f"{_percent(last.get('train_accuracy'), spread.get('train_accuracy'))}"
          f" | {_percent(last.get('test_accuracy'), spread.get('test_accuracy'))}"
          f" | {best_text} |")
    out.append("")
  return "\n".join(out)


def claims_table(runs, scale):
  """Markdown: the claims of every study present, judged at `scale`."""
  verdicts = claims_lib.judge(runs, scale)
  if not verdicts:
    return ""
  return "\n".join(
      [f"## Claims (`experiments/verify.py --scale={scale}`)", "",
       "| study | claim | measured | verdict |", "|---|---|---|---|"]
      + [f"| {v.study} | {v.claim} | {v.measured} | {v.verdict} |"
         for v in verdicts]) + "\n"


# --- main --------------------------------------------------------------------


def plot_all(runs_dir, out_dir, formats=("png",), log=print, scale="cpu"):
  """Writes every figure and summary.md; returns the paths written."""
  bad = [f for f in formats if f not in FORMATS]
  if bad or not formats:
    raise cli.UsageError(f"--format={','.join(formats)}: each must be one of "
                         f"{', '.join(FORMATS)}")
  runs = load_runs(runs_dir)
  if not runs:
    raise cli.UsageError(f"no runs under {runs_dir} (expected <study>/<run>/"
                         "metrics.csv; see experiments/run.py)")
  os.makedirs(out_dir, exist_ok=True)
  written = []
  for study in studies_lib.STUDIES.values():
    fig = study_figure(study, runs)
    if fig is not None:
      written += save_figure(fig, out_dir, study.name, formats)
  fig = activations_figure(runs)
  if fig is not None:
    written += save_figure(fig, out_dir, "bn_noise_activations", formats)
  for metric, name in SUMMARY_PANELS:
    fig = summary_figure(runs, metric, name)
    if fig is not None:
      written += save_figure(fig, out_dir, f"summary_{metric}", formats)
  table = os.path.join(out_dir, "summary.md")
  with open(f"{table}.tmp", "w") as f:
    f.write(summary_table(runs))
    claims = claims_table(runs, scale)
    if claims:
      f.write("\n" + claims)
  os.replace(f"{table}.tmp", table)
  written.append(table)
  log(f"{len(runs)} runs; wrote {len(written)} files to {out_dir}")
  return written


def main(argv):
  if len(argv) > 1:
    raise cli.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  plot_all(FLAGS.runs_dir, FLAGS.out_dir, tuple(FLAGS.format),
           scale=FLAGS.scale)


def define_flags():
  """Defines the flags (only when run as a script: tests import this module
  next to the trainer, whose flags share names)."""
  config_lib.define_path_flag("runs_dir", "runs",
                              "Where experiments/run.py put the runs.")
  config_lib.define_path_flag("out_dir", "figures", "Where the figures go.")
  flags.DEFINE_list("format", ["png"], f"Figure formats: {', '.join(FORMATS)}.")
  flags.DEFINE_enum("scale", "cpu", list(claims_lib.SCALES), "Thresholds of "
                    "the claims in summary.md (see experiments/verify.py).")


if __name__ == "__main__":
  define_flags()
  cli.run(main)
