"""`bench`: latency, throughput, memory and accuracy of every backend side by side (`run`), on exported
artifacts kept in a work directory (`work`), reported as rows (`report`) and a figure (`plot`)."""

from .report import BenchError, BenchReport, BenchRow
from .run import BenchOptions, run_bench

__all__ = ["BenchError", "BenchOptions", "BenchReport", "BenchRow", "run_bench"]
