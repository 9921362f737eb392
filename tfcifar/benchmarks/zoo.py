r"""Training throughput of every zoo model in our loop.

  python -m tfcifar.benchmarks.zoo --data_dir=DIR [--models=lenet5,resnet] \
      [--steps=60] [--warmup_steps=20] [--repeats=3] [trainer flags]

For each model (default: every registered one, `tfcifar.models.MODELS`), the
model flags of its flagfile `flags/zoo/<name>.cfg` (--resnet_depth=74,
--aux_heads, --dropout, ...; vgglike has none and takes the command line's)
and every other flag from the command line: by default plain SGD, batch
128, no augmentation, --preprocess=standardize, --xla auto, so the models
differ only in the network. The timing is `tfcifar.benchmarks.train`'s
(`time_trainer`: --warmup_steps untimed steps, then --steps timed ones),
repeated --repeats times on one built model (the first warmup compiles).

Prints a line per model (name, parameters as `model.count_params()`, the
images/s mean ± sample std over the repeats), a JSON line with every
number, and last a markdown table. A model that fails (e.g. out of memory)
is reported as such and the others still run.
"""

import dataclasses
import gc
import json
import os
import shutil
import statistics
import tempfile

from absl import app
from absl import flags
import keras
import tensorflow as tf

import tfcifar
from tfcifar import config as config_lib
from tfcifar import errors
from tfcifar import models
from tfcifar import train
from tfcifar import trainer as trainer_lib
from tfcifar.benchmarks import train as bench_train  # --steps, timing

ZOO_DIR = os.path.join(os.path.dirname(os.path.dirname(tfcifar.__file__)),
                       "flags", "zoo")

flags.DEFINE_list("models", [], "Models to time (default: every registered "
                  "one).")
flags.DEFINE_integer("repeats", 3, "Timings per model (mean ± std).")
config_lib.define_path_flag("zoo_dir", ZOO_DIR, "The zoo's flagfiles, "
                            "<name>.cfg.")
FLAGS = flags.FLAGS


def model_flags(name, zoo_dir):
  """{flag: value} of every model flag of `zoo_dir/<name>.cfg` ({"model":
  name} if there is none)."""
  path = os.path.join(zoo_dir, f"{name}.cfg")
  if not os.path.exists(path):
    return {"model": name}
  model = config_lib.from_flagfile(path).model
  if model.name != name:
    raise errors.UserError(f"{path} trains --model={model.name}, not {name}")
  return {config_lib.flag_name(f): getattr(model, f.name)
          for f in dataclasses.fields(model) if config_lib.is_flag(f)}


def flags_text(model_config):
  """The model flags that differ from their defaults, as flags."""
  default = config_lib.ModelConfig(name=model_config.name)
  changed = {config_lib.flag_name(f): getattr(model_config, f.name)
             for f in dataclasses.fields(model_config)
             if config_lib.is_flag(f) and
             getattr(model_config, f.name) != getattr(default, f.name)}
  return " ".join(config_lib.flag_words(changed))


def time_model(config, strategy, repeats):
  """(parameters, [images/s of each repeat]) of one model."""
  trainer = trainer_lib.Trainer(config, strategy)
  parameters = trainer.model.count_params()
  rates = [bench_train.time_trainer(trainer) for _ in range(repeats)]
  return parameters, rates


def markdown(rows, header_note):
  lines = [header_note, "",
           "| `--model` | model flags | parameters | images/s |",
           "|---|---|---|---|"]
  for row in rows:
    rate = (f"{row['mean']:.1f} ± {row['std']:.1f}" if "mean" in row
            else f"failed: {row['error']}")
    params = f"{row['parameters']:,}" if "parameters" in row else "-"
    flag_cell = f"`{row['flags']}`" if row["flags"] else ""
    lines.append(f"| `{row['model']}` | {flag_cell} | {params} | {rate} |")
  return "\n".join(lines)


def main(argv):
  del argv
  if FLAGS.repeats < 1 or FLAGS.steps < 1 or FLAGS.warmup_steps < 0:
    raise errors.UserError("--repeats and --steps must be >= 1, "
                           "--warmup_steps >= 0")
  names = FLAGS.models or sorted(models.MODELS)
  unknown = sorted(set(names) - set(models.MODELS))
  if unknown:
    raise errors.UserError(f"--models: unknown {', '.join(unknown)}; "
                           f"registered: {', '.join(sorted(models.MODELS))}")
  base = train.config_from_flags()
  base = base.replace(data_dir=train.resolve_data_dir(base.data.data_dir),
                      progress="none")
  strategy = tf.distribute.get_strategy()
  device = ", ".join(d.name for d in tf.config.list_logical_devices())
  o = base.optim
  note = (f"Training images/s of our loop on {device}: {FLAGS.steps} timed "
          f"steps after {FLAGS.warmup_steps} untimed, mean ± std of "
          f"{FLAGS.repeats} repeats; batch {o.batch_size}, --optimizer="
          f"{o.optimizer}, --{'' if base.data.augment else 'no'}augment, "
          f"--preprocess={base.data.preprocess}, --precision="
          f"{base.run.precision}, --xla={trainer_lib.resolve_xla(base).run.xla}"
          f"; data {base.data.data_dir}.")
  print(note, flush=True)
  rows = []
  for name in names:
    # A bad flagfile is a usage error (exit 2) before anything is timed.
    rows.append(dict(model=name, overrides=model_flags(name, FLAGS.zoo_dir)))
  for row in rows:
    model_dir = tempfile.mkdtemp(prefix=f"bench_zoo_{row['model']}_")
    try:
      config = base.replace(model_dir=model_dir, **row.pop("overrides"))
      row["flags"] = flags_text(config.model)
      row["parameters"], rates = time_model(config, strategy, FLAGS.repeats)
      row.update(mean=statistics.mean(rates),
                 std=statistics.stdev(rates) if len(rates) > 1 else 0.0,
                 images_per_sec=[round(r, 1) for r in rates])
      print(f"{row['model']:16s} {row['parameters']:>12,d} parameters  "
            f"{row['mean']:10.1f} ± {row['std']:.1f} images/s  "
            f"{row['flags']}", flush=True)
    except Exception as e:  # pylint: disable=broad-except  (report, go on)
      row.setdefault("flags", "")
      row["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
      print(f"{row['model']:16s} failed: {row['error']}", flush=True)
    finally:
      shutil.rmtree(model_dir, ignore_errors=True)
      keras.backend.clear_session()
      gc.collect()
  print(json.dumps(dict(
      device=device, steps=FLAGS.steps, warmup_steps=FLAGS.warmup_steps,
      repeats=FLAGS.repeats, batch_size=o.batch_size,
      models=[{k: (round(v, 1) if isinstance(v, float) else v)
               for k, v in row.items()} for row in rows])))
  print()
  print(markdown(rows, note))
  if any("error" in row for row in rows):
    raise SystemExit(1)


def entry_point():
  app.run(lambda argv: errors.run_main(main, argv),
          flags_parser=train.parse_flags)


if __name__ == "__main__":
  entry_point()
