"""The postmortem as one standalone HTML page: the Markdown postmortem rendered by
markdown-it-py (CommonMark plus tables, raw HTML off, so whatever an agent wrote arrives
as text, never as markup) inside a Jinja template with autoescape on. No scripts."""

from __future__ import annotations

import functools

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markdown_it import MarkdownIt
from markupsafe import Markup

from opeval import __version__
from opeval.export._markdown import title, to_markdown
from opeval.export._postmortem import Postmortem


@functools.cache
def _templates() -> Environment:
    return Environment(loader=PackageLoader("opeval.export", "templates"), autoescape=select_autoescape(["html"]),
                       undefined=StrictUndefined, keep_trailing_newline=True)


@functools.cache
def _markdown() -> MarkdownIt:
    return MarkdownIt("commonmark", {"html": False}).enable("table")


def to_html(pm: Postmortem) -> str:
    """The postmortem as a standalone HTML page (its timeline a ``<table>``)."""
    # Raw HTML is off: markdown-it escapes every tag in the text, so its output is safe markup.
    body = Markup(_markdown().render(to_markdown(pm)))  # noqa: S704 - escaped by markdown-it (html off)
    return _templates().get_template("postmortem.html").render(
        title=title(pm), body=body, version=__version__, trial_id=pm.trial["trial_id"], rule_set=pm.rules.key)
