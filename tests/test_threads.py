"""CPU threads per torch process: device.num_threads, else the cores shared out among the torch
processes tru runs at once (the sweep's size under a parallel local launcher)."""

from omegaconf import OmegaConf

from tru_cli import threads
from tru_cli.runner import sweep_size


def _sweep(task, params=None, max_batch_size=None):
    return OmegaConf.create({"hydra": {"overrides": {"task": task},
                                       "sweeper": {"params": params, "max_batch_size": max_batch_size}}})


def test_sweep_size_counts_command_line_and_config_sweeps():
    assert sweep_size(_sweep(["method.alpha=0.3,0.4", "experiments=smoke"])) == 2
    assert sweep_size(_sweep(["method.alpha=0.3,0.4", "seed=range(0,3)"])) == 6
    assert sweep_size(_sweep(["seed=1"], params={"method": "tru,graddiff"})) == 2  # experiments' sweeper.params
    assert sweep_size(_sweep(["method.alpha=0.1,0.2,0.3,0.4"], max_batch_size=3)) == 3  # the sweeper's batch
    assert sweep_size(_sweep(["method.alpha=interval(0,1)"])) is None  # sampled: cannot be listed


def test_threads_share_the_cores_among_local_jobs(monkeypatch):
    device = OmegaConf.create({"num_threads": None})
    monkeypatch.setattr(threads, "cores", lambda: 8)
    monkeypatch.delenv(threads.LOCAL_JOBS_ENV, raising=False)
    assert threads.count(device) == 8
    monkeypatch.setenv(threads.LOCAL_JOBS_ENV, "3")
    assert threads.count(device) == 2
    assert threads.count(device, jobs=16) == 1  # never below one thread
    assert threads.count(OmegaConf.create({"num_threads": 5})) == 5  # an explicit count wins
