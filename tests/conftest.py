import pytest

import kubesim


@pytest.fixture
def simulate(tmp_path):
    """Start the simulated API server on a scenario; returns (simulator, kubeconfig path)."""
    started = []

    def start(scenario, **overrides):
        loaded = kubesim.load(scenario, overrides) if overrides else kubesim.load(scenario)
        sim = kubesim.Simulator(loaded).start()
        started.append(sim)
        return sim, sim.write_kubeconfig(tmp_path / f"kubeconfig-{len(started)}")

    yield start
    for sim in started:
        sim.stop()
