import os

from setuptools import setup

with open(os.path.join(os.path.dirname(__file__), "sb3_mlsh", "version.txt")) as version_file:
    __version__ = version_file.read().strip()

with open(os.path.join(os.path.dirname(__file__), "README.md"), encoding="utf-8") as readme_file:
    long_description = readme_file.read()

setup(
    name="sb3-mlsh",
    version=__version__,
    description="Meta Learning Shared Hierarchies (MLSH) for Stable-Baselines3",
    long_description=long_description,
    long_description_content_type="text/markdown",
    packages=["sb3_mlsh", "sb3_mlsh.mlsh", "sb3_mlsh.common", "sb3_mlsh.distributed", "sb3_mlsh.cli", "mlsh_envs"],
    package_dir={"sb3_mlsh": "sb3_mlsh", "mlsh_envs": "envs"},
    package_data={"sb3_mlsh": ["version.txt", "py.typed", "hyperparams/*.yml"], "mlsh_envs": ["assets/*.xml"]},
    python_requires=">=3.10",
    install_requires=[
        "stable-baselines3>=2.4,<3.0",
        "sb3-contrib>=2.4,<3.0",
        "gymnasium>=1.0,<2.0",
        "torch>=2.4,<3.0",
        "mujoco>=3.1",
        "numpy>=1.24",
        "pyyaml>=6.0",
        "pandas>=1.5",
        "matplotlib>=3.7",
        "tensorboard>=2.12",
        "tqdm",
        "rich",
        "filelock>=3.12,<5",
    ],
    extras_require={
        "tests": ["pytest>=7.0", "pytest-timeout>=2.1", "ruff>=0.5", "mypy>=1.10"],
        "plots": ["matplotlib>=3.7", "pandas>=1.5"],
        "zoo": ["rl_zoo3>=2.4,<3.0"],
        "docs": ["sphinx>=8.0", "furo", "myst-parser>=4.0"],
    },
    entry_points={"console_scripts": ["sb3-mlsh-train=sb3_mlsh.cli.train:run"]},
    license="MIT",
    classifiers=["Programming Language :: Python :: 3", "Topic :: Scientific/Engineering :: Artificial Intelligence"],
)
