"""pdca: the Plan-Do-Check-Act lifecycle of credit-product marketing campaigns on Prefect.

Importing pdca registers `gc.freeze` as an exit handler. A process that ran a flow (a
`pdca` command, or a worker's flow-run process, `python -m prefect.engine`, which imports
pdca through the flow's module) holds some 450,000 objects from about 3,500 modules
(Prefect, Great Expectations, pandas, SciPy), and Python's shutdown runs the cycle
collector over all of them while it clears the modules: 1.0-1.4 s of every command and
every flow run on these machines, for a process about to end. Frozen objects are left out
of those passes, so the shutdown takes under 0.1 s. Nothing else changes: exit handlers
still run (last registered first, so the log and event workers Prefect starts for a flow
are flushed before this one), and objects are still freed by reference counting as the
modules are cleared.
"""

import atexit
import gc

__version__ = "0.1.0"

atexit.register(gc.freeze)
