"""Do: who gets which message, on which channel, in which window — recorded before sending.

The dispatch stage, one idea per module, in the order the flow (`flows/dispatch.py`)
uses them:

- `slots`: the campaign's named send windows on a weekday, in its time zone, as UTC;
- `audience`: the plan's quotas, the segments' propensity, and the window's audience
  staged in the database — exclusions (`sql/dispatch_audience.sql`), window, variant,
  tier and channel — then trimmed to each channel's capacity;
- `assignment`: the stable hash behind variants, hold-out, windows and tier-B
  alternation, identical in Python, SQLite and PostgreSQL;
- `routing`: tier from credit score and the segment's propensity → channel;
- `outbox`: the batch of (campaign, day, window) and its outbox: every intended send is
  written before any is sent; hold-out members and held sends;
- `sending`: chunks of the outbox through the gateways, the journal and the receipts; a
  provider that keeps failing has its channel's sends deferred to the next run;
- `keys`: the idempotency key of each intended send;
- `locks`: the campaign's dispatch lock;
- `artifacts`: what a dispatch reports — window summaries, the table and progress artifacts;
- `wording`: every distinct message rendered and checked before anything goes;
- `gateways`: one interface for every way a message is sent.
"""
