"""pdca: the Plan-Do-Check-Act lifecycle of credit-product marketing campaigns on Prefect."""

__version__ = "0.1.0"
