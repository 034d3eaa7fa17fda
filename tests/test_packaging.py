"""The repository's promises about itself: license, documented timings."""
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _read(*parts):
    with open(os.path.join(ROOT, *parts), encoding="utf-8") as f:
        return f.read()


def test_license_file_matches_setup_py():
    assert _read("LICENSE").startswith("MIT License\n")
    assert "License :: OSI Approved :: MIT License" in _read("setup.py")


def test_readme_and_shapes_docstring_agree_on_the_training_time():
    readme = re.search(r"(\d+) minutes on 2 CPU cores", _read("README.md"))
    sample = re.search(r"shapes\.py train\s+# ~(\d+) min on 2 CPU cores", _read("samples", "shapes.py"))
    assert readme and sample
    assert readme.group(1) == sample.group(1)
