"""Sphinx configuration of the sb3-mlsh documentation: ``sphinx-build -W -b html docs docs/_build/html``."""

import os
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, ROOT)

with open(os.path.join(ROOT, "sb3_mlsh", "version.txt")) as version_file:
    release = version_file.read().strip()

project = "sb3-mlsh"
author = "sb3-mlsh developers"
copyright = "2026, sb3-mlsh developers"
version = release

extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.viewcode", "myst_parser"]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build"]
myst_heading_anchors = 3
# The included pages link to CSV files and source folders, which are not documentation pages.
suppress_warnings = ["myst.xref_missing", "myst.header"]

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"show-inheritance": True}
# Inherited docstrings (gymnasium's, SB3's) are written for their own docs' markup.
autodoc_inherit_docstrings = False
# Type hints name classes of SB3, torch and gymnasium that these docs do not document.
nitpicky = False

html_theme = "furo"
html_title = f"sb3-mlsh {release}"
