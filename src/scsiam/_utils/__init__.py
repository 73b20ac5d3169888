"""Shared helpers of every room: input checks, undo on error, runtime settings."""

from ._checks import (
    check_batch_complete,
    check_finite,
    check_gene_names,
    check_keywords,
    check_n_clusters,
    check_n_obs,
    check_not_negative,
    check_not_view,
    check_signal,
    get_layer,
    in_memory,
    is_count_matrix,
    matrix_values,
    reject_unknown,
)
from ._runtime import (
    INTERNAL_WARNINGS,
    in_ci,
    is_main_process,
    keep_torch_threads,
    package_version,
    quiet_internal_warnings,
    quiet_libraries,
    rank_world,
    torch_threads_from_env,
)
from ._undo import restored_on_error, write_atomically
