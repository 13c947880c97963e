"""Gateways: the phone channel — customers go on the relationship managers' call list."""

from __future__ import annotations

from tasks.do.gateways.simulated import SimulatedGateway


class CallListGateway(SimulatedGateway):
    """The phone channel: nothing is sent; the customer goes on the call list that
    relationship managers work through (`pdca export touches`). Accepted means listed
    (`gateway_ref` = `call-<key>`); call outcomes come back in the touches feed, or are
    drawn in the demo like the simulated gateway's."""

    name = "call-list"
    ref_prefix = "call"
