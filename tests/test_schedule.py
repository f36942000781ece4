"""isoclip.common.schedule: dependencies, cores and critical-path order."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor

import pytest

from isoclip.common.schedule import Task, remaining_paths, run_tasks


class Recorder:
    """Runs tasks in threads, recording start order and the cores busy at once."""

    def __init__(self, cap: int = 99) -> None:
        self.cap = cap  # the run's cores: a task's cores are capped there
        self.pool = ThreadPoolExecutor(max_workers=8)
        self.lock = threading.Lock()
        self.started: list[str] = []
        self.ended: list[str] = []
        self.busy = 0
        self.max_busy = 0

    def task(self, name: str, cores: int = 1, needs: tuple[str, ...] = (), estimate: float = 0,
             seconds: float = 0.02, fail: bool = False) -> Task:
        def body() -> str:
            with self.lock:
                self.started.append(name)
                self.busy += min(cores, self.cap)
                self.max_busy = max(self.max_busy, self.busy)
                missing = [n for n in needs if n not in self.ended]
            assert not missing, f"{name} started before {missing}"
            time.sleep(seconds)
            with self.lock:
                self.busy -= min(cores, self.cap)
                self.ended.append(name)
            if fail:
                raise RuntimeError(f"{name} failed")
            return name.upper()

        def start() -> Future[str]:
            return self.pool.submit(body)

        return Task(name, start, cores=cores, needs=frozenset(needs), estimate=estimate)


def test_critical_path_order_on_one_core() -> None:
    r = Recorder()
    tasks = [r.task("a", estimate=1), r.task("b", estimate=5), r.task("c", needs=("a",),
                                                                      estimate=10)]
    assert remaining_paths(tasks) == {"a": 11, "b": 5, "c": 10}
    done = []
    out = run_tasks(tasks, 1, on_done=lambda t, res, s: done.append((t.name, res)))
    assert r.started == ["a", "c", "b"]  # a unblocks the long c, so it goes before b
    assert out == {"a": "A", "b": "B", "c": "C"}
    assert [n for n, _ in done] == ["a", "c", "b"]


def test_cores_are_never_oversubscribed_and_needs_hold() -> None:
    r = Recorder(cap=2)
    tasks = [r.task("model", cores=2, estimate=100, seconds=0.1),
             *(r.task(f"nb{i}", needs=("model",), estimate=i) for i in range(5)),
             r.task("free", estimate=1),
             r.task("big", cores=5, needs=("nb0",), estimate=1)]  # capped at the run's cores
    run_tasks(tasks, 2)
    assert r.started[0] == "model"  # the longest path goes first, with both cores
    assert r.max_busy == 2  # both cores used, never more ("big" is capped at 2)
    assert set(r.started) == {t.name for t in tasks}


def test_two_core_task_is_not_starved_by_later_short_tasks() -> None:
    r = Recorder()
    tasks = [r.task("short0", estimate=50, seconds=0.05), r.task("short1", estimate=1),
             r.task("wide", cores=2, estimate=40), r.task("short2", estimate=1)]
    run_tasks(tasks, 2)
    # short0 and wide are the most urgent; wide waits for both cores, short1/2 do not jump it
    assert r.started.index("wide") < r.started.index("short1")
    assert r.started.index("wide") < r.started.index("short2")


def test_a_task_taking_every_core_goes_before_a_one_core_task_of_similar_urgency() -> None:
    r = Recorder(cap=2)
    tasks = [r.task("narrow", estimate=320), r.task("wide", cores=2, estimate=300),
             r.task("after", needs=("narrow", "wide"), estimate=500)]
    assert remaining_paths(tasks)["narrow"] > remaining_paths(tasks)["wide"]
    run_tasks(tasks, 2)
    assert r.started == ["wide", "narrow", "after"]  # not narrow first with a core idle
    r = Recorder(cap=1)  # on one core the factor is 1 for both: the longer path first
    run_tasks([r.task("narrow", estimate=320), r.task("wide", cores=2, estimate=300)], 1)
    assert r.started == ["narrow", "wide"]


def test_a_failure_stops_new_starts_and_is_raised() -> None:
    r = Recorder()
    tasks = [r.task("x", estimate=10, fail=True), r.task("y", estimate=1),
             r.task("z", needs=("y",))]
    with pytest.raises(RuntimeError, match="x failed"):
        run_tasks(tasks, 1)
    assert r.started == ["x"]


def test_bad_graphs_and_arguments() -> None:
    r = Recorder()
    with pytest.raises(ValueError, match="not a task"):
        remaining_paths([r.task("a", needs=("ghost",))])
    with pytest.raises(ValueError, match="cycle"):
        remaining_paths([r.task("a", needs=("b",)), r.task("b", needs=("a",))])
    with pytest.raises(ValueError, match="duplicate"):
        remaining_paths([r.task("a"), r.task("a")])
    with pytest.raises(ValueError, match="cores"):
        run_tasks([r.task("a")], 0)
    with pytest.raises(ValueError, match="cores"):
        r.task("a", cores=0)


def test_simulate_follows_the_policy_by_hand() -> None:
    from isoclip.common.schedule import simulate

    r = Recorder()
    tasks = [r.task("wide", cores=2, estimate=300), r.task("narrow", estimate=320),
             r.task("x", needs=("wide",), estimate=100), r.task("y", needs=("narrow", "x"),
                                                              estimate=50)]
    # 2 cores: wide 0-300 on both; narrow and x start at 300; x ends 400, narrow 620; y 620-670
    makespan, starts = simulate(tasks, 2)
    assert makespan == 670
    assert starts == [(0, "wide"), (300, "narrow"), (300, "x"), (620, "y")]
    assert simulate(tasks, 8)[0] == 450  # wide beside narrow from 0; x 300-400; y 400-450
    assert simulate(tasks, 1)[0] == 770  # one core: everything in a row
    with pytest.raises(ValueError, match="cores"):
        simulate(tasks, 0)


def test_the_committed_durations_cover_the_build_and_project_it(capsys) -> None:
    """benchmarks/build_schedule.py replays the build's schedule with notebooks/durations.json:
    every model of the manifest and every chapter has a duration there, and the projection is
    never below the CPU-seconds bound."""
    import runpy
    from pathlib import Path

    script = Path(__file__).resolve().parent.parent / "benchmarks" / "build_schedule.py"
    bench = runpy.run_path(str(script))
    durations = json.loads(Path(bench["DURATIONS_HINT"]).read_text())
    tasks = bench["graph"]({k: float(v) for k, v in durations.items()})
    assert {t.name for t in tasks} == set(durations)  # nothing missing, nothing stale
    for cores in (1, 2, 8):
        makespan, starts = bench["simulate"](tasks, cores)
        assert makespan >= sum(t.estimate * min(t.cores, cores) for t in tasks) / cores - 1e-6
        assert len(starts) == len(tasks)
    assert bench["main"](["--cores", "2"]) == 0
    assert "CPU / cores" in capsys.readouterr().out
