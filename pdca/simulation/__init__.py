"""The season simulator: pdca's whole loop run against a world that answers back.

- `truths`: the world file (hidden truths, the manager's approval policy), validated;
- `world`: the customers and the true chances behind what they do.
"""
