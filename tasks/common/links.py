"""Links to pdca's files from the Prefect UI.

A browser refuses `file://` links from a web page, so a link artifact to a report on the
worker's disk opens nothing. When `PDCA_REPORTS_URL` says where the output folder is
served, artifacts link there; otherwise they say where the file is, as text that can be
copied, and how to make it a link.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote, urljoin

from prefect.artifacts import create_link_artifact, create_markdown_artifact


def served_url(path: Path, output_dir: Path, reports_url: str | None) -> str | None:
    """The address of `path` under `reports_url`, when it is set and `path` is in the
    output folder it serves."""
    if not reports_url:
        return None
    try:
        relative = path.resolve().relative_to(output_dir.resolve())
    except ValueError:
        return None
    return urljoin(reports_url.rstrip("/") + "/", quote(relative.as_posix()))


def publish_file_link(
    key: str,
    path: Path,
    text: str,
    description: str,
    *,
    output_dir: Path,
    reports_url: str | None,
) -> None:
    """A link artifact to the served file, or a markdown artifact naming the file."""
    url = served_url(path, output_dir, reports_url)
    if url is not None:
        create_link_artifact(key=key, link=url, link_text=text, description=description)
        return
    create_markdown_artifact(
        key=key,
        markdown=(
            f"**{text}**: `{path.resolve()}` on the machine that ran the flow.\n\n"
            "Set `PDCA_REPORTS_URL` to the address where the output folder is served "
            "to get a link that opens here."
        ),
        description=description,
    )
