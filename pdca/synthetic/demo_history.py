"""A synthetic but realistic history of one lending campaign, written as the contract's feeds.

`write_demo_feeds` simulates campaign `demo-sme-2026` (SME revolving credit, Asia/Shanghai)
over `weeks` weeks from `start` and writes the seven feeds as CSV files in exactly the
contract's formats, plus the campaign spec YAML beside them. The story it tells is one the
check and act stages can find: tier A customers are called by relationship managers
(expensive, converts best), tier B get SMS and IM, tier C low-touch app pushes and e-mails;
variant B genuinely lifts the application rate by about 15 %; tier C loans go overdue more
often; sends happen only in the weekday noon and evening windows.

The output is deterministic for a seed, and it streams: customers are simulated in blocks
(each block with its customers' whole history) and appended to the files, so a million
customers need no more memory than one block. A few deliberately bad rows are mixed into
every feed (`BAD_ROWS` says which and why), so that imports have something to quarantine.

This module is the package's front door: the entry points and the names callers use.
Where the rest lives:

- `campaign`: the campaign's identity and policy, `campaign_spec`, `assign_variant`;
- `world`: the calibration (population, channel behaviour, decisions, loans);
- `people`, `touches`, `outcomes`: one block's customers, their touches, and what follows
  (applications, decisions, loans, repayments, complaints);
- `bad_rows`: the deliberately bad rows (`BAD_ROWS`) and where they go;
- `columns`: arrays as the feeds' text, keys numbered across blocks;
- `feeds`: `write_demo_feeds`, `DemoFiles`, `summarise`.

Run it locally:
`python -m pdca.synthetic.demo_history OUT_DIR [--customers N] [--weeks W] [--seed S]`.
"""

from __future__ import annotations

import argparse
from datetime import date
from pathlib import Path

from pdca.synthetic.bad_rows import BAD_ROWS
from pdca.synthetic.campaign import (
    CAMPAIGN_ID,
    CHANNELS,
    FUTURE_WEEKS,
    PRODUCT,
    TIMEZONE,
    assign_variant,
    campaign_spec,
)
from pdca.synthetic.columns import FEED_COLUMNS
from pdca.synthetic.feeds import DemoFiles, summarise, write_demo_feeds
from pdca.synthetic.world import SEGMENTS

__all__ = [
    "BAD_ROWS",
    "CAMPAIGN_ID",
    "CHANNELS",
    "FEED_COLUMNS",
    "FUTURE_WEEKS",
    "PRODUCT",
    "SEGMENTS",
    "TIMEZONE",
    "DemoFiles",
    "assign_variant",
    "campaign_spec",
    "main",
    "summarise",
    "write_demo_feeds",
]


def main(argv: list[str] | None = None) -> None:
    """Write the demo feeds where the command line says and print their summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--customers", type=int, default=50_000)
    parser.add_argument("--weeks", type=int, default=8)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--start", type=date.fromisoformat, default=date(2026, 3, 2))
    arguments = parser.parse_args(argv)
    print(
        summarise(
            write_demo_feeds(
                arguments.out_dir,
                arguments.customers,
                arguments.weeks,
                arguments.seed,
                arguments.start,
            )
        )
    )


if __name__ == "__main__":
    main()
