"""Run dependent tasks on a fixed number of cores, longest remaining path first.

The book's build is a small graph: a chapter can start once the models it loads are trained,
and trainings and chapters compete for the same cores (a training with two torch threads
takes two). :func:`run_tasks` is list scheduling on that graph: whenever cores are free it
starts the ready task (every task it needs has finished) of highest priority, its *remaining
path* (its own estimated duration plus the longest remaining path among the tasks that need
it: the classic critical-path priority) times the cores it takes. The factor puts a task
that needs several cores before a one-core task of similar urgency: started first it uses
every core, started second it would leave cores idle while it waits for them. Ties keep the
declaration order. A task needing more cores than are free waits for them (no smaller task
overtakes it), so a two-thread training is never starved. Estimates only order the tasks;
they change nothing in what a task computes.

A failing task stops the run: tasks already running finish, nothing new starts, and the first
error is raised once they are done.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable, Sequence
from collections.abc import Set as AbstractSet
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Task", "priority_order", "remaining_paths", "run_tasks", "simulate"]


@dataclass(frozen=True)
class Task:
    """One unit of work of :func:`run_tasks`.

    Attributes:
        name: unique name (``needs`` refers to it).
        start: starts the task (e.g. submits it to an executor) and returns its future.
        cores: cores it occupies while running (capped at the run's cores).
        needs: names of the tasks that must finish first.
        estimate: expected duration in seconds (only orders the tasks).
    """

    name: str
    start: Callable[[], Future[Any]]
    cores: int = 1
    needs: frozenset[str] = field(default_factory=frozenset)
    estimate: float = 0.0

    def __post_init__(self) -> None:
        if isinstance(self.cores, bool) or not isinstance(self.cores, int) or self.cores < 1:
            raise ValueError(f"cores: expected an int >= 1, got {self.cores!r}")
        if self.estimate < 0:
            raise ValueError(f"estimate: expected seconds >= 0, got {self.estimate!r}")


def remaining_paths(tasks: Sequence[Task]) -> dict[str, float]:
    """Each task's estimate plus the longest remaining path of the tasks that need it.

    Raises:
        ValueError: duplicate names, a need that names no task, or a cycle.
    """
    by_name = {t.name: t for t in tasks}
    if len(by_name) != len(tasks):
        names = [t.name for t in tasks]
        raise ValueError(f"tasks: duplicate names {sorted({n for n in names if names.count(n) > 1})}")
    users: dict[str, list[str]] = {t.name: [] for t in tasks}
    for t in tasks:
        for n in t.needs:
            if n not in by_name:
                raise ValueError(f"task {t.name!r} needs {n!r}, which is not a task")
            users[n].append(t.name)
    path: dict[str, float] = {}
    visiting: set[str] = set()

    def visit(name: str) -> float:
        if name in path:
            return path[name]
        if name in visiting:
            raise ValueError(f"tasks: a cycle through {name!r}")
        visiting.add(name)
        path[name] = by_name[name].estimate + max((visit(u) for u in users[name]), default=0.0)
        visiting.discard(name)
        return path[name]

    for t in tasks:
        visit(t.name)
    return path


def priority_order(tasks: Sequence[Task], cores: int) -> list[Task]:
    """``tasks`` from most to least urgent on ``cores`` cores: remaining path times the cores a
    task takes (see the module docstring), ties in declaration order."""
    path = remaining_paths(tasks)
    order = {t.name: i for i, t in enumerate(tasks)}
    return sorted(tasks, key=lambda t: (-path[t.name] * min(t.cores, cores), order[t.name]))


def _take_startable(pending: list[Task], finished: AbstractSet[str], free: int, cores: int,
                    busy: bool) -> list[tuple[Task, int]]:
    """Remove from ``pending`` (most urgent first) and return, with the cores each takes, the
    ready tasks that start now: in order, until the first ready task that needs more cores
    than are free (it waits for them; nothing overtakes it).

    Raises:
        ValueError: nothing is running (``busy`` False) and nothing can start.
    """
    out = []
    for t in [t for t in pending if t.needs <= finished]:
        need = min(t.cores, cores)
        if need > free:
            break
        pending.remove(t)
        out.append((t, need))
        free -= need
    if not out and not busy:
        raise ValueError("tasks: nothing can start (unfinished needs); pending: "
                         f"{[t.name for t in pending]}")
    return out


def simulate(tasks: Sequence[Task], cores: int) -> tuple[float, list[tuple[float, str]]]:
    """The schedule :func:`run_tasks` follows when every task takes exactly its estimate.

    A projection, not a measurement: it assumes tasks side by side run as fast as alone
    (memory bandwidth and frequency scaling make real runs slower).

    Returns:
        ``(makespan, [(start second, name), ...])`` in start order.
    """
    if isinstance(cores, bool) or not isinstance(cores, int) or cores < 1:
        raise ValueError(f"cores: expected an int >= 1, got {cores!r}")
    pending = priority_order(tasks, cores)
    now, free = 0.0, cores
    running: list[tuple[float, int, str, int]] = []  # (end, start index, name, cores)
    finished: set[str] = set()
    starts: list[tuple[float, str]] = []
    while pending or running:
        for t, need in _take_startable(pending, finished, free, cores, bool(running)):
            heapq.heappush(running, (now + t.estimate, len(starts), t.name, need))
            starts.append((now, t.name))
            free -= need
        now, _, name, need = heapq.heappop(running)
        free += need
        finished.add(name)
        while running and running[0][0] == now:  # everything ending at the same second
            _, _, name, need = heapq.heappop(running)
            free += need
            finished.add(name)
    return now, starts


def run_tasks(tasks: Sequence[Task], cores: int,
              on_done: Callable[[Task, Any, float], None] | None = None) -> dict[str, Any]:
    """Run ``tasks`` respecting ``needs``, at most ``cores`` cores busy.

    Args:
        tasks: the tasks (names unique, needs among them, no cycle).
        cores: cores of the run (>= 1).
        on_done: called in this thread with (task, result, wall seconds) as each one ends.

    Returns:
        name -> result of every task.

    Raises:
        ValueError: bad ``cores`` or graph; the first task error, after the running ones end.
    """
    if isinstance(cores, bool) or not isinstance(cores, int) or cores < 1:
        raise ValueError(f"cores: expected an int >= 1, got {cores!r}")
    pending = priority_order(tasks, cores)
    finished: dict[str, Any] = {}
    running: dict[Future[Any], tuple[Task, int, float]] = {}
    free = cores
    error: BaseException | None = None
    while running or (pending and error is None):
        if error is None:
            for t, need in _take_startable(pending, finished.keys(), free, cores,
                                           bool(running)):
                running[t.start()] = (t, need, time.perf_counter())
                free -= need
        done, _ = wait(running, return_when=FIRST_COMPLETED)
        for fut in done:
            t, need, t0 = running.pop(fut)
            free += need
            exc = fut.exception()
            if exc is not None:
                error = error or exc
                continue
            finished[t.name] = fut.result()
            if on_done is not None:
                on_done(t, finished[t.name], time.perf_counter() - t0)
    if error is not None:
        raise error
    return finished
