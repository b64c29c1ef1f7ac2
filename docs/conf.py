"""Sphinx configuration of the sb3-mlsh documentation: ``sphinx-build -W -b html docs docs/_build/html``."""

import inspect
import os
import re
import sys
from typing import Any

from sphinx import addnodes
from sphinx.application import Sphinx
from sphinx.ext.autodoc.typehints import record_typehints
from sphinx.transforms.post_transforms import SphinxPostTransform
from sphinx.util.inspect import stringify_signature

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


def _included_files() -> dict[str, str]:
    """:return: The files outside docs/ that a page includes whole (their paths without extension), each with its page."""
    pages = {}
    docs = os.path.dirname(os.path.abspath(__file__))
    for name in sorted(os.listdir(docs)):
        if name.endswith(".md"):
            with open(os.path.join(docs, name)) as file:
                for target in re.findall(r"^```\{include\}\s+(\S+)", file.read(), flags=re.MULTILINE):
                    pages[os.path.splitext(os.path.normpath(os.path.join(docs, target)))[0]] = name[: -len(".md")]
    return pages


class LinkIncludedFiles(SphinxPostTransform):
    """
    A link to a file that a page includes (``[RESULTS](../benchmarks/RESULTS.md)``, which works on GitHub) goes to that
    page: MyST knows only the files under docs/, and would leave the link as plain text.
    """

    default_priority = 8  # before MyST resolves its links (9)

    def run(self, **kwargs: Any) -> None:
        included = _included_files()
        folder = os.path.dirname(self.env.doc2path(self.env.docname))
        links = (addnodes.pending_xref, addnodes.download_reference)
        for node in list(self.document.findall(lambda candidate: isinstance(candidate, links))):
            if node.get("reftype") != "myst" or node.get("reftarget") in self.env.all_docs:
                continue
            # MyST names a file outside docs/ by its absolute path without extension, or leaves the link's text as is.
            target, _, anchor = str(node["reftarget"]).partition("#")
            page = included.get(os.path.splitext(os.path.normpath(os.path.join(folder, target)))[0])
            if page is not None:
                link = addnodes.pending_xref(
                    "",
                    refdomain="doc",
                    reftarget=page,
                    reftargetid=anchor or node.get("reftargetid"),
                    refdoc=self.env.docname,
                    reftype="myst",
                    refexplicit=node.get("refexplicit", True),
                )
                link += node.children
                node.replace_self(link)


def _public_signature(
    app: Sphinx, what: str, name: str, obj: Any, options: Any, signature: str | None, return_annotation: str | None
) -> tuple[str, str | None] | None:
    """
    A class's documented signature and parameter types are its ``__init__``'s, without the private parameters.

    autodoc reads a class's type hints from the class, where SB3's attribute annotations (``policy: BasePolicy``,
    ``env: VecEnv``) replace those of the constructor's arguments of the same name (``policy: str | type[...]``).
    """
    if what != "class" or "__init__" not in vars(obj):  # a constructor of its own (not an Enum's, a NamedTuple's)
        return None
    annotations = app.env.current_document.autodoc_annotations
    annotations.pop(name, None)
    record_typehints(app, what, name, obj.__init__, options, "", "")
    for hidden in [key for key in annotations.get(name, {}) if key.startswith("_") or key == "unknown_kwargs"]:
        del annotations[name][hidden]
    if signature is None:
        return None
    parameters = [
        parameter
        for parameter in inspect.signature(obj.__init__).parameters.values()
        if parameter.name != "self" and not parameter.name.startswith("_") and parameter.name != "unknown_kwargs"
    ]
    shown = inspect.Signature(parameters).replace(return_annotation=inspect.Signature.empty)
    return stringify_signature(shown, show_annotation=False, show_return_annotation=False), return_annotation


def setup(app: Sphinx) -> None:
    app.add_post_transform(LinkIncludedFiles)
    app.connect("autodoc-process-signature", _public_signature, priority=600)  # after autodoc records the hints (500)
