"""The suite-profiling plugin (`tests/_suite_profile.py`) adds up right.

Its hooks are called here with made-up reports and JAX events, as pytest
and pytest-xdist would call them, and the printed table is read back.
"""

import importlib.util
import pathlib
import types

import pytest

PLUGIN = pathlib.Path(__file__).with_name("_suite_profile.py")


@pytest.fixture
def profile():
    """A fresh copy of the plugin module, with empty counts.

    Not `tests._suite_profile` itself: when the suite runs with the plugin
    on, that module is counting this very run.
    """
    spec = importlib.util.spec_from_file_location("suite_profile_copy", PLUGIN)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _report(nodeid, duration):
    return types.SimpleNamespace(nodeid=nodeid, duration=duration)


def _table(profile, config):
    lines = []
    reporter = types.SimpleNamespace(config=config, write_line=lines.append)
    profile.pytest_terminal_summary(reporter)
    return lines


def test_files_compilations_and_workers_add_up(profile):
    trace, lower, compile_ = profile._EVENTS
    # Two tests of one file compile a program each (the second reports
    # no lowering); a file that compiles nothing still gets its row.
    profile.pytest_runtest_setup(types.SimpleNamespace(nodeid="a.py::t1"))
    for event, seconds in [(trace, 0.5), (lower, 1.0), (compile_, 2.0)]:
        profile._on_duration(event, seconds)
    profile._on_duration("/jax/other/event", 100.0)  # not a compilation
    profile.pytest_runtest_setup(types.SimpleNamespace(nodeid="a.py::t2"))
    profile._on_duration(compile_, 1.5)
    profile._on_duration(trace, 0.25)
    for nodeid, seconds in [
        ("a.py::t1", 3.0),
        ("a.py::t2", 2.0),
        ("b.py::t", 1.0),
        ("c.py::t", 4.0),
    ]:
        profile.pytest_runtest_logreport(_report(nodeid, seconds))
    # An xdist worker's counts for b.py arrive when it finishes.
    worker = types.SimpleNamespace(
        workeroutput={"suite_profile": {"b.py": [4, 0.75]}}
    )
    profile.pytest_testnodedown(worker, None)
    # A worker that crashed hands nothing over and breaks nothing.
    profile.pytest_testnodedown(types.SimpleNamespace(), "crashed")

    lines = _table(profile, types.SimpleNamespace())
    assert "10 s of test time in 3 files" in lines[1]
    rows = [line.split() for line in lines[3:]]
    # Slowest file first: seconds, share, compilations, compile seconds.
    assert rows == [
        ["5.0", "50.0%", "2", "5.2", "a.py"],
        ["4.0", "40.0%", "0", "0.0", "c.py"],
        ["1.0", "10.0%", "4", "0.8", "b.py"],
    ]


def test_a_worker_hands_its_counts_over_and_prints_nothing(profile):
    profile.pytest_runtest_setup(types.SimpleNamespace(nodeid="a.py::t"))
    profile._on_duration(profile._EVENTS[-1], 1.0)
    config = types.SimpleNamespace(workeroutput={})
    profile.pytest_sessionfinish(types.SimpleNamespace(config=config))
    assert config.workeroutput["suite_profile"] == {"a.py": [1, 1.0]}
    assert _table(profile, config) == []
