"""The weekly review as a PDF, for managers who forward or print it.

Printed by the headless Chromium the project already runs for its page tests (Debian's
`chromium` and `chromium-driver`, installed by `.ci/system-packages.sh`), through
Selenium's WebDriver print command (Chrome's `Page.printToPDF`): the PDF is the page the
browser shows, charts and fonts included, with every folded detail opened first, so the
printed copy has everything the HTML has. No other renderer, no network: the report file
stands alone (its charts are `data:` URIs).
"""

from __future__ import annotations

import base64
import tempfile
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
OPEN_DETAILS = "document.querySelectorAll('details').forEach((el) => { el.open = true; });"


class PdfUnavailable(RuntimeError):
    """No headless Chromium here to print with."""


def print_pdf(report: Path, *, timeout: float = 60.0) -> bytes:
    """The report file printed to an A4 PDF (background colours kept, details unfolded)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.print_page_options import PrintOptions
    from selenium.webdriver.support.ui import WebDriverWait

    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        raise PdfUnavailable(f"needs {CHROMIUM} and {CHROMEDRIVER} (.ci/system-packages.sh)")
    with tempfile.TemporaryDirectory(prefix="pdca-pdf-") as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = str(CHROMIUM)
        for argument in (
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
        ):
            options.add_argument(argument)
        browser = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
        try:
            browser.set_page_load_timeout(timeout)
            browser.get(report.resolve().as_uri())
            WebDriverWait(browser, timeout).until(
                lambda b: b.execute_script("return document.readyState") == "complete"
            )
            browser.execute_script(OPEN_DETAILS)
            settings = PrintOptions()
            settings.background = True
            settings.page_width, settings.page_height = 21.0, 29.7
            return base64.b64decode(browser.print_page(settings))
        finally:
            browser.quit()
