"""The experiment judgement of the Check stage (docs/experiments.md).

- `members`: the members of each arm, kept in the database as the checks go;
- `judge`: the comparisons and their decisions;
- `sequential`: the mixture SPRT (always-valid p-values, confidence sequences);
- `cuped`: the variance reduction by a pre-assignment covariate;
- `fixed`: the fixed-horizon z-test, Wald interval, Holm, SRM and Cohen's sample size.
"""

from tasks.check.experiments.fixed import (
    holm,
    min_sample,
    srm_p_value,
    wald_interval,
    z_test_p_value,
)
from tasks.check.experiments.judge import (
    DECISIONS,
    HOLDOUT,
    RESULT_KEYS,
    compare,
    decide,
    judge,
)
from tasks.check.experiments.members import (
    ARM_COLUMNS,
    MEMBER_COLUMNS,
    experiment_members,
    experiment_started_at,
    recount_experiment_members,
)

__all__ = [
    "ARM_COLUMNS",
    "DECISIONS",
    "HOLDOUT",
    "MEMBER_COLUMNS",
    "RESULT_KEYS",
    "compare",
    "decide",
    "experiment_members",
    "experiment_started_at",
    "holm",
    "judge",
    "min_sample",
    "recount_experiment_members",
    "srm_p_value",
    "wald_interval",
    "z_test_p_value",
]
