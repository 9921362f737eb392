"""The notebook's claims, as code: each study's expected result, judged.

`judge(runs, scale)` takes the runs of `plot.load_runs` ({run key: RunData},
seeded runs already averaged over their seeds) and returns one `Verdict` per
claim of every study present. Every number is the final epoch's (the mean
over seeds). Two scales:

  cpu   the reduced-scale profile (flags/cpu_scale.cfg): qualitative claims
        with thresholds for a small network trained on a subset;
  full  the notebook's numbers on the whole data (a GPU sweep).

  bn_lr             at every lr, BN ends with a lower train loss than no BN;
                    at lr 0.5 no BN stays near chance (train acc <= 0.2, or
                    diverges) while BN trains (>= 0.5)
  bn_noise          noisy BN beats no BN on train accuracy, and is closer to
                    BN than to no BN: acc_noisy >= (acc_bn + acc_nobn) / 2
  augmentation      cpu: test acc with augmentation >= without + 2 points;
                    full: without >= 81% (notebook 83-84%), with >= 88% (~90%);
                    both: train acc with augmentation <= without
  label_corruption  train acc >= 0.9 at every p; test acc falls with p
                    (Spearman <= -0.9); test at p=1 in [0.05, 0.15];
                    cpu: p=0.1 below p=0; full: p=0.1 costs 4-10 points (~7)
  image_corruption  all three reach train acc >= 0.9; random pixels and
                    gaussian test <= 0.2; cpu: shuffled test >= 0.25 and
                    >= 5 points above both; full: shuffled >= 0.40 (~50%)
"""

import dataclasses
import math

SCALES = ("cpu", "full")
REPRODUCED, NOT_REPRODUCED = "reproduced", "not reproduced"


@dataclasses.dataclass(frozen=True)
class Verdict:
  study: str
  claim: str
  measured: str
  reproduced: bool

  @property
  def verdict(self):
    return REPRODUCED if self.reproduced else NOT_REPRODUCED


class _Missing(Exception):
  """A run a claim needs is absent or has no completed epoch."""


def _final(runs, key, metric):
  run = runs.get(key)
  value = run.final(metric) if run is not None else None
  if value is None:
    raise _Missing(key)
  return value


def _pct(value):
  return f"{100 * value:.1f}%"


def spearman(xs, ys):
  """Spearman's rank correlation (average ranks for ties)."""

  def ranks(values):
    order = sorted(range(len(values)), key=lambda i: values[i])
    result = [0.0] * len(values)
    i = 0
    while i < len(order):
      j = i
      while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
        j += 1
      for k in range(i, j + 1):
        result[order[k]] = (i + j) / 2
      i = j + 1
    return result

  rx, ry = ranks(xs), ranks(ys)
  mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
  cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
  norm = math.sqrt(sum((a - mx) ** 2 for a in rx) *
                   sum((b - my) ** 2 for b in ry))
  return cov / norm if norm else math.nan


# --- the claims, one function per study: yield (claim, measured, ok) --------


def _bn_lr(runs, scale):
  del scale
  from experiments import studies  # pylint: disable=g-import-not-at-top
  pairs, ok = [], True
  for lr in studies.LEARNING_RATES:
    key = f"{lr:g}"
    if f"bn_lr/bn-lr{key}" not in runs and f"bn_lr/nobn-lr{key}" not in runs:
      continue
    bn = _final(runs, f"bn_lr/bn-lr{key}", "train_loss")
    nobn_run = runs.get(f"bn_lr/nobn-lr{key}")
    if nobn_run is not None and nobn_run.diverged:
      pairs.append(f"lr {key}: {bn:.3f} vs diverged")
      continue
    nobn = _final(runs, f"bn_lr/nobn-lr{key}", "train_loss")
    ok &= bn < nobn
    pairs.append(f"lr {key}: {bn:.3f} vs {nobn:.3f}")
  yield ("at every lr BN ends with a lower train loss than no BN",
         "; ".join(pairs), ok and bool(pairs))
  bn = _final(runs, "bn_lr/bn-lr0.5", "train_accuracy")
  nobn_run = runs.get("bn_lr/nobn-lr0.5")
  if nobn_run is not None and nobn_run.diverged:
    yield ("lr 0.5: no BN fails (diverges or train acc <= 20%), BN trains "
           "(>= 50%)", f"no BN diverged, BN {_pct(bn)}", bn >= 0.5)
    return
  nobn = _final(runs, "bn_lr/nobn-lr0.5", "train_accuracy")
  yield ("lr 0.5: no BN stays near chance (train acc <= 20%), BN trains "
         "(>= 50%)", f"no BN {_pct(nobn)}, BN {_pct(bn)}",
         nobn <= 0.2 and bn >= 0.5)


def _bn_noise(runs, scale):
  del scale
  bn = _final(runs, "bn_noise/bn", "train_accuracy")
  noisy = _final(runs, "bn_noise/bn-noise", "train_accuracy")
  nobn = _final(runs, "bn_noise/nobn", "train_accuracy")
  measured = f"BN {_pct(bn)}, noisy BN {_pct(noisy)}, no BN {_pct(nobn)}"
  yield "noisy BN beats no BN on train accuracy", measured, noisy > nobn
  yield ("noisy BN is closer to BN than to no BN: acc_noisy >= "
         "(acc_bn + acc_nobn) / 2", f"{_pct(noisy)} vs "
         f"{_pct((bn + nobn) / 2)}", noisy >= (bn + nobn) / 2)


def _augmentation(runs, scale):
  test_no = _final(runs, "augmentation/noaug", "test_accuracy")
  test_aug = _final(runs, "augmentation/aug", "test_accuracy")
  measured = f"without {_pct(test_no)}, with {_pct(test_aug)}"
  if scale == "cpu":
    yield ("augmentation raises test accuracy by >= 2 points", measured,
           test_aug >= test_no + 0.02)
  else:
    yield ("test accuracy without augmentation ~83-84% (>= 81%)", measured,
           test_no >= 0.81)
    yield "test accuracy with augmentation ~90% (>= 88%)", measured, (
        test_aug >= 0.88)
  train_no = _final(runs, "augmentation/noaug", "train_accuracy")
  train_aug = _final(runs, "augmentation/aug", "train_accuracy")
  yield ("train accuracy with augmentation <= without",
         f"without {_pct(train_no)}, with {_pct(train_aug)}",
         train_aug <= train_no)


def _label_probs(runs):
  prefix = "label_corruption/labels-p"
  return sorted(float(k[len(prefix):]) for k in runs if k.startswith(prefix))


def _label_corruption(runs, scale):
  probs = _label_probs(runs)
  key = lambda p: f"label_corruption/labels-p{p:.1f}"  # noqa: E731
  train = [_final(runs, key(p), "train_accuracy") for p in probs]
  test = [_final(runs, key(p), "test_accuracy") for p in probs]
  yield ("train accuracy >= 90% at every p",
         ", ".join(f"p={p:g}: {_pct(a)}" for p, a in zip(probs, train)),
         min(train) >= 0.9)
  rho = spearman(probs, test) if len(probs) > 2 else math.nan
  yield ("test accuracy falls with p (Spearman <= -0.9)",
         f"rho = {rho:.2f} over p = {', '.join(f'{p:g}' for p in probs)} "
         f"({', '.join(_pct(a) for a in test)})", rho <= -0.9)
  at_one = _final(runs, key(1.0), "test_accuracy")
  yield "test accuracy at p=1 is chance, in [5%, 15%]", _pct(at_one), (
      0.05 <= at_one <= 0.15)
  clean = _final(runs, key(0.0), "test_accuracy")
  p01 = _final(runs, key(0.1), "test_accuracy")
  measured = (f"p=0: {_pct(clean)}, p=0.1: {_pct(p01)} "
              f"({100 * (clean - p01):.1f} points)")
  if scale == "cpu":
    yield "p=0.1 tests below p=0", measured, p01 < clean
  else:
    yield "p=0.1 costs about 7 points of test accuracy (4-10)", measured, (
        0.04 <= clean - p01 <= 0.10)


def _image_corruption(runs, scale):
  names = ("shuffled_pixels", "random_pixels", "gaussian")
  train = {n: _final(runs, f"image_corruption/{n}", "train_accuracy")
           for n in names}
  test = {n: _final(runs, f"image_corruption/{n}", "test_accuracy")
          for n in names}
  yield ("all three reach train accuracy >= 90%",
         ", ".join(f"{n} {_pct(a)}" for n, a in train.items()),
         min(train.values()) >= 0.9)
  shuffled, others = test["shuffled_pixels"], (test["random_pixels"],
                                               test["gaussian"])
  measured = ", ".join(f"{n} {_pct(a)}" for n, a in test.items())
  if scale == "cpu":
    yield ("shuffled pixels generalise: test >= 25% and >= 5 points above "
           "random pixels and gaussian", measured,
           shuffled >= 0.25 and shuffled >= max(others) + 0.05)
  else:
    yield "shuffled pixels test ~50% (>= 40%)", measured, shuffled >= 0.40
  yield "random pixels and gaussian test near chance (<= 20%)", measured, (
      max(others) <= 0.2)


CLAIMS = {
    "bn_lr": _bn_lr,
    "bn_noise": _bn_noise,
    "augmentation": _augmentation,
    "label_corruption": _label_corruption,
    "image_corruption": _image_corruption,
}


def studies_present(runs):
  """The studies (in CLAIMS order) with at least one run in `runs`."""
  return [s for s in CLAIMS if any(k.startswith(f"{s}/") for k in runs)]


def judge(runs, scale="cpu"):
  """[Verdict] for every claim of every study present in `runs`."""
  if scale not in SCALES:
    raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
  verdicts = []
  for study in studies_present(runs):
    try:
      for claim, measured, ok in CLAIMS[study](runs, scale):
        verdicts.append(Verdict(study, claim, measured, bool(ok)))
    except _Missing as e:
      verdicts.append(Verdict(study, "every run the claims need is present",
                              f"missing or empty: {e}", False))
  return verdicts
