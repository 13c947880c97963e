"""The season simulator (`pdca simulate`): pdca's whole loop run against a world that answers.

- `truths`: the world file (hidden truths, the manager's approval policy), validated;
- `world`: the customers (the demo's generator) and the true chances behind what they do;
- `campaign`: the season's campaign spec and last season's history to plan from;
- `backoffice`: the ledger of what follows each send dispatch made, drawn from the world;
- `feeds`: the ledger's due rows as the contract's daily feeds, loaded by the importer;
- `season`: the day loop over the real flows; `approvals`: the world file's manager;
- `verdict`, `invariants`, `report`: what the season found, lost and kept, as JSON and HTML;
- `command`: the CLI command's body.
"""
