"""Install mrcnn: Mask R-CNN for TensorFlow 2 and Keras 3.

CPU and GPU users both get the ``tensorflow`` wheel (on Linux it runs on the CPU
and, with the ``[gpu]`` extra, pulls the CUDA libraries from PyPI). The ``[jax]`` extra adds
JAX (CPU) for Keras' JAX backend; requirements-jax.txt lists what a JAX-only install
without TensorFlow needs (``pip install -r requirements-jax.txt && pip install --no-deps
-e .``). See README, "Backends / JAX".
"""
import os

from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))

with open(os.path.join(HERE, "README.md"), encoding="utf-8") as f:
    LONG_DESCRIPTION = f.read()

setup(
    name="mrcnn",
    version="0.1.0",
    description="Mask R-CNN for TensorFlow 2 and Keras 3, matterport-compatible",
    long_description=LONG_DESCRIPTION,
    long_description_content_type="text/markdown",
    packages=find_packages(include=["mrcnn", "mrcnn.*"]),
    python_requires=">=3.11",
    install_requires=[
        "tensorflow>=2.16",
        "keras>=3.0",
        "numpy>=2.0",
        "scikit-image>=0.22",
        "h5py>=3.10",
        "pycocotools>=2.0.7",
        "albumentations>=2.0,<2.1",
        "matplotlib>=3.8",
        "tensorboard>=2.16",
    ],
    extras_require={
        "gpu": ["tensorflow[and-cuda]>=2.16"],
        # Exporters and runtimes for MaskRCNN.export (README "Deploy"); these versions
        # install beside numpy 2 / protobuf 7 without changing them.
        "onnx": ["tf2onnx>=1.17", "onnx>=1.17", "onnxruntime>=1.20"],
        "litert": ["ai-edge-litert>=2.0"],
        # Keras' JAX backend (KERAS_BACKEND=jax): CPU wheels; "jax-cuda" for NVIDIA GPUs.
        # Tested with JAX 0.10 (CPU) and 0.11 (CUDA 13).
        "jax": ["jax[cpu]>=0.10"],
        "jax-cuda": ["jax[cuda13]>=0.10"],
        "dev": [
            "pytest>=8",
            "pytest-xdist>=3.5",
            "hypothesis>=6.100",
            "nbclient>=0.10",
            "nbformat>=5.10",
            "ipykernel>=6.29",
        ],
    },
    entry_points={"console_scripts": ["mrcnn = mrcnn.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "License :: OSI Approved :: MIT License",
        "Topic :: Scientific/Engineering :: Image Recognition",
    ],
)
