"""Reports of a study: read a study folder (:mod:`.tree`), write tables and plots (:mod:`.writers`).

``build_report(DIR)`` reads the folder through its ``manifest.json`` (a dry-run tree filled by
VASP, or a ``pqdflow run`` folder) and ``write_report(report, DIR)`` writes ``report.csv``,
``report.json``, ``report.md`` and the plots; ``write_results`` writes what ``pqdflow run``
produces (``results.json``, ``results.csv``, plots).
"""

from __future__ import annotations

from pqdflow.analysis.report.tree import (
    VIB_DOC,
    VIB_SPECTRUM,
    InconsistentCalculationsError,
    StudyReport,
    build_report,
    check_consistency,
)
from pqdflow.analysis.report.writers import (
    format_table,
    results_csv,
    write_report,
    write_results,
)

__all__ = [
    "VIB_DOC",
    "VIB_SPECTRUM",
    "InconsistentCalculationsError",
    "StudyReport",
    "build_report",
    "check_consistency",
    "format_table",
    "results_csv",
    "write_report",
    "write_results",
]
