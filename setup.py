"""tfc-sth: soft-then-hard quantization for learned image compression on tfc."""

import setuptools

setuptools.setup(
    name="tfc-sth",
    version="0.1.0",
    description="Soft-then-hard quantization and SAUN for learned image "
                "compression on TensorFlow Compression.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10,<3.12",
    # The package has one sub-package per side; the shipped SavedModels live
    # in models/ and install as tfc_sth.shipped_models.
    packages=["tfc_sth", "tfc_sth.model", "tfc_sth.training",
              "tfc_sth.runtime", "tfc_sth.tools", "tfc_sth.shipped_models"],
    package_dir={"tfc_sth": "tfc_sth", "tfc_sth.shipped_models": "models"},
    package_data={"tfc_sth.shipped_models": [
        "*/*.pb", "*/*.json", "*/*.md", "*/variables/*", "*/assets/*",
        "*/fingerprint.pb"]},
    install_requires=[
        "tensorflow~=2.14.1",
        "tensorflow-compression==2.14.1",
        "tensorflow-datasets",
        # tensorflow 2.14 needs protobuf < 5. On Python 3.11, protobuf 3.20
        # has only its pure-Python implementation, which loads and saves
        # models 3-4x slower than 4.25's; tensorflow-metadata 1.15 is the
        # release that accepts 4.25 there without asking for protobuf 5 (on
        # Python 3.10 it keeps 3.20, which has a compiled wheel).
        "protobuf>=4.25.2,<5; python_version >= '3.11'",
        "tensorflow-metadata>=1.15,<1.16",
        "absl-py",
        "numpy<2",
    ],
    extras_require={
        "test": ["pytest", "pillow", "matplotlib"],
        # JPEG anchor (Pillow) and rate-distortion plots.
        "evaluate": ["pillow", "matplotlib"],
    },
    entry_points={"console_scripts": ["tfc-sth=tfc_sth.cli:entry_point"]},
)
