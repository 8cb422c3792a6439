"""A simulated, read-only Kubernetes API server driven by scenario files (tests, benchmarks, the demo)."""

from kubesim.scenario import Scenario, load
from kubesim.server import Simulator

__all__ = ["Scenario", "Simulator", "load"]
