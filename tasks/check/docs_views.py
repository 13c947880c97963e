"""Great Expectations' Data Docs views with their Jinja templates compiled once per process.

GE builds a new view, and with it a new Jinja environment, for every Data Docs build, so
every check compiled the same page, section and component templates again: about 0.3 s
of each check's 0.55 s of Data Docs (measured on the UCI monthly series, 31 checks). These
views are GE's own, plugged in through the site builder's documented `view` setting
(`gx_runs._docs_site`); they only give the environment a process-wide bytecode cache, so
each template is parsed and compiled once, and its page renders as before.
"""

from __future__ import annotations

from great_expectations.render.view import DefaultJinjaIndexPageView, DefaultJinjaPageView
from jinja2 import BytecodeCache
from jinja2.bccache import Bucket


class ProcessBytecodeCache(BytecodeCache):
    """Compiled templates kept in memory for the process's life, by template and source
    checksum (a changed template, as after an upgrade of GE, compiles again). Data Docs
    are built under `GX_LOCK`, so one build at a time uses it."""

    def __init__(self) -> None:
        self._codes: dict[str, tuple[str, object]] = {}

    def load_bytecode(self, bucket: Bucket) -> None:
        checksum, code = self._codes.get(bucket.key, (None, None))
        if checksum == bucket.checksum:
            bucket.code = code

    def dump_bytecode(self, bucket: Bucket) -> None:
        self._codes[bucket.key] = (bucket.checksum, bucket.code)


BYTECODE = ProcessBytecodeCache()


class _CompiledOnce:
    """Gives a GE view's new Jinja environment the process's bytecode cache."""

    def __init__(self, custom_styles_directory=None, custom_views_directory=None) -> None:
        super().__init__(custom_styles_directory, custom_views_directory)
        self.env.bytecode_cache = BYTECODE


class PageView(_CompiledOnce, DefaultJinjaPageView):
    """GE's page view (suite and validation result pages)."""


class IndexPageView(_CompiledOnce, DefaultJinjaIndexPageView):
    """GE's index page view."""


VIEWS = {"module_name": __name__}
"""The `module_name` of the views in a site builder's configuration."""
