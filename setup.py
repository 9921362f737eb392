"""tfcifar: CIFAR-10 experiments in TensorFlow 2 / Keras 3.

  pip install -e ".[cpu]"        # CPU-only TensorFlow (tensorflow-cpu)
  pip install -e ".[gpu]"        # TensorFlow with CUDA libraries (tensorflow[and-cuda])
  pip install -e ".[cpu,test]"   # plus pytest
"""

import setuptools

TF_VERSION = ">=2.16"

setuptools.setup(
    name="tfcifar",
    version="0.1.0",
    description="Faithful, fast CIFAR-10 experiments in TensorFlow 2 / Keras 3",
    long_description=open("README.md").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.9",
    packages=setuptools.find_packages(include=["tfcifar", "tfcifar.*"]),
    package_data={"tfcifar": ["sample_data/*.tar.gz"]},
    entry_points={"console_scripts": [
        "tfcifar-train = tfcifar.train:entry_point",
        "tfcifar-convert = tfcifar.convert.cli:entry_point",
        "tfcifar-evaluate = tfcifar.evaluate:entry_point",
        "tfcifar-visualize = tfcifar.visualize:entry_point",
        "tfcifar-probe = tfcifar.probe:entry_point",
    ]},
    install_requires=[
        "keras>=3.0",
        "absl-py",
        "numpy",
        "matplotlib",
        "pillow",
        "tensorboard",
        "tensorflow-datasets",
    ],
    extras_require={
        # TensorFlow itself comes from one of these two extras, so that CPU
        # users do not download the CUDA wheels and GPU users get them.
        "cpu": [f"tensorflow-cpu{TF_VERSION}"],
        "gpu": [f"tensorflow[and-cuda]{TF_VERSION}"],
        "test": ["pytest"],
    },
)
