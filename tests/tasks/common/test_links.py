"""Links that open from the Prefect UI: served addresses, never file:// ."""

from __future__ import annotations

from pathlib import Path

from tasks.common.links import served_url


def test_a_served_output_folder_gives_an_address(tmp_path: Path) -> None:
    docs = tmp_path / "out" / "data-docs" / "index.html"
    url = served_url(docs, tmp_path / "out", "https://reports.example/pdca")
    assert url == "https://reports.example/pdca/data-docs/index.html"


def test_no_address_without_a_served_folder(tmp_path: Path) -> None:
    assert served_url(tmp_path / "out" / "r.html", tmp_path / "out", None) is None


def test_a_file_outside_the_served_folder_gets_no_address(tmp_path: Path) -> None:
    assert served_url(tmp_path / "elsewhere.html", tmp_path / "out", "https://r.example/") is None
