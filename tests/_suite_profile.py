"""Where the suite's time goes: a pytest plugin, off by default.

    KERAS_BACKEND=jax .venv/bin/python -m pytest -n 2 --dist loadfile \\
        -p tests._suite_profile tests/layers

prints, after the run, one row per test file: the time its tests took
(set-up, call and tear-down, summed over the workers) and, on JAX, how many
XLA compilations ran while they did and the seconds spent tracing,
lowering and compiling them. On JAX most of a run's time is compilation:
each op run eagerly compiles once per new shape (30-50 ms here), so the
compilation column says whether a file's time is its computations or its
count of distinct shapes (see CONTRIBUTING.md, "Keeping the suite fast").
Works with and without pytest-xdist: workers send their counts to the
controller when they finish. Subprocesses a test starts are not counted.
"""

import collections

import pytest

# Per test file: [compilations, seconds]; the files' times come from the
# test reports, which the controller sees under xdist too.
_compiles = collections.defaultdict(lambda: [0, 0.0])
_seconds = collections.defaultdict(float)
_current = ["(outside tests)"]
# JAX's duration events of one compilation: trace, lower, compile.
_EVENTS = (
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "/jax/core/compile/backend_compile_duration",
)


def _on_duration(event, duration, **kwargs):
    if event in _EVENTS:
        entry = _compiles[_current[0]]
        entry[1] += duration
        # One compilation is one backend compile (a cache hit has none).
        if event == _EVENTS[-1]:
            entry[0] += 1


def pytest_sessionstart(session):
    # Imported here: tests/conftest.py sets the backends' environment first.
    import keras

    if keras.backend.backend() != "jax":
        return
    import jax.monitoring

    jax.monitoring.register_event_duration_secs_listener(_on_duration)


def pytest_runtest_setup(item):
    _current[0] = item.nodeid.split("::")[0]


def pytest_runtest_logreport(report):
    _seconds[report.nodeid.split("::")[0]] += report.duration


def pytest_sessionfinish(session):
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:  # an xdist worker: hand the counts over
        workeroutput["suite_profile"] = dict(_compiles)


@pytest.hookimpl(optionalhook=True)  # an xdist hook
def pytest_testnodedown(node, error):
    # The controller, as each xdist worker finishes (a worker that crashed
    # has no output: its counts are lost, its crash is xdist's to report).
    counts = getattr(node, "workeroutput", {}).get("suite_profile", {})
    for name, (count, seconds) in counts.items():
        _compiles[name][0] += count
        _compiles[name][1] += seconds


def pytest_terminal_summary(terminalreporter):
    if hasattr(terminalreporter.config, "workeroutput"):
        return
    write = terminalreporter.write_line
    total = sum(_seconds.values())
    write("")
    write(f"suite profile: {total:.0f} s of test time in {len(_seconds)} files")
    write(f"{'s':>8} {'share':>6} {'compiles':>9} {'compile s':>10}  file")
    for name, seconds in sorted(_seconds.items(), key=lambda kv: -kv[1]):
        count, compile_seconds = _compiles.get(name, (0, 0.0))
        write(
            f"{seconds:8.1f} {seconds / max(total, 1e-9):6.1%} {count:9d} "
            f"{compile_seconds:10.1f}  {name}"
        )
