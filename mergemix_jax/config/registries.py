"""The names of registries that live in higher packages, declared here so that config validation can
check a config against them before anything is built (and without importing jax).

eval/tasks.py builds its task kinds on TASK_METRICS; merge/operators.py's registry must hold exactly
MERGE_METHODS (tests/test_config.py compares them)."""

MERGE_METHODS = ("linear", "ties", "dare")  # merge/operators.py MERGE_OPERATORS, in that order
TASK_METRICS = {  # task kind -> the metric prefixes it yields (eval/tasks.py TASK_KINDS)
    "choice": ("acc", "ce", "acc_norm", "ce_norm"),
    "answer": ("answer_nll", "exact"),
}
