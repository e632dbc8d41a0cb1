"""keras-slim: Network Slimming and Dynamic Channel Execution for Keras, exported to LiteRT."""
from setuptools import find_packages, setup

setup(
    name="keras-slim",
    version="0.1.0",
    description="Make Keras CNNs small and fast for phones: Network Slimming, "
                "Dynamic Channel Execution, structural rebuild, TFLite export.",
    python_requires=">=3.10",
    # export/ and apps/ sit beside keras_slim/ in the repository and install inside it, so
    # nothing but keras_slim lands at the top of site-packages.
    packages=find_packages(include=["keras_slim", "keras_slim.*"])
    + ["keras_slim.export", "keras_slim.apps"],
    package_dir={"keras_slim.export": "export", "keras_slim.apps": "apps"},
    entry_points={"console_scripts": [
        f"keras-slim-{name}=keras_slim.apps.{name}:launch"
        for name in ("slim", "train", "prune", "finetune", "export", "evaluate", "benchmark")]},
    install_requires=[
        "tensorflow>=2.16",
        "tf-keras>=2.16",
        "tensorboard",
        "tensorflow-model-optimization>=0.8",
        "tensorflow-datasets>=4.9",
        # tfds 4.9.x imports it on Python < 3.12 without declaring it.
        "importlib_resources",
        "absl-py",
        "numpy",
        "ai-edge-litert",
        "matplotlib",  # apps.slim's report.png
    ],
    extras_require={"test": ["pytest", "hypothesis"]},
)
