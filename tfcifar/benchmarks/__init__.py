"""Benchmarks, each runnable as `python -m tfcifar.benchmarks.<name>`.

  convert  the conversion tool, images/s (official format and JPEG folders)
  input    the tf.data pipeline against a naive per-image pipeline
  train    our training loop (XLA on/off) against Keras `model.fit`
  zoo      our training loop's images/s for every zoo model (mean ± std)

Each prints its numbers; its last line is a JSON object (zoo: followed by a
markdown table).
"""
