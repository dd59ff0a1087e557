"""search: the architecture search space, the constrained multi-objective Optuna study, MLflow tracking
and the Pareto plots. The stage that drives them is pipeline.search."""
from .space import RandomChooser, SmallestChooser, SpaceError, check_space, suggest_arch
from .study import Budgets, Objective, TrialResult, completed, feasible, make_sampler, open_study, pareto_trials

__all__ = [
    "RandomChooser", "SmallestChooser", "SpaceError", "check_space", "suggest_arch", "Budgets", "Objective",
    "TrialResult", "completed", "feasible", "make_sampler", "open_study", "pareto_trials",
]
