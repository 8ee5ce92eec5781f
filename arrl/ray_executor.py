"""`--executor ray`: each trial a Ray task on a cluster, the same isolated worker process inside it.

    ray start --head                                  # on the first machine
    ray start --address=HEAD_IP:6379                  # on every other machine (arrl installed on each)
    python -m arrl.main --executor ray --ray-address HEAD_IP:6379 --workers 8

A trial is one Ray task with `num_cpus`/`num_gpus` (Ray sets CUDA_VISIBLE_DEVICES to the GPUs it grants,
so no two trials share a GPU). The task does not run the trial in its own process: it starts the same
`python -m arrl.worker` subprocess as `LocalProcessExecutor` (fresh interpreter per trial, so JAX
memory and compile state never leak between trials) and enforces the same deadlines and memory cap there.
So Ray may reuse its worker processes (it does: they never import jax), which saves a Ray worker start per
trial. Progress events travel to the driver through a small hub actor: the task pushes the events it has
gathered without waiting, at most one push per 0.1 s (a push costs ~1 ms of CPU on the node and the hub,
and a trial may report a hundred steps a second; events that arrive sooner wait for the next one or the
end of the trial); a push's reply says whether the driver asked the trial to stop (it is read once it has
arrived). One driver thread pulls every trial's events every 0.1 s, so the hub's load does not grow with
the number of workers. Before the task returns it pushes what is left and waits until the hub holds it,
and the driver takes a finished trial's last events from the hub itself, so its early-abort monitor (and
live display) sees every event, in order; its stop reaches the trial a push or two later. The driver
alone writes the ledger and state: a task only returns its result.

Failures: tasks are never retried by Ray (max_retries=0), so a trial runs at most once per submission.
A killed Ray worker, a lost node or a task Ray cannot run becomes a `crash` with the Ray error in
`error`; a task that returns nothing within the trial's deadline plus `lost_grace_s` of its start is
cancelled and recorded as a crash too (a node that vanished without Ray noticing). Cancelling (second
Ctrl-C) force-cancels the task; the worker subprocess dies with it (PR_SET_PDEATHSIG).

Ray is an extra (`pip install -e ".[ray]"`), imported only when this executor is built.
"""
from __future__ import annotations

import dataclasses
import math
import os
import queue
import tempfile
import threading
import time
from typing import Any, Callable

from arrl.runner import _ROOT, LocalProcessExecutor, Monitor, TrialCancelled, TrialJob, TrialResult, WorkerLimits

INSTALL_HINT = 'Ray is not installed: pip install -e ".[ray]" (or pip install ray)'
POLL_S = 0.1


def import_ray() -> Any:
  try:
    import ray
  except ImportError:
    raise ImportError(f"--executor ray: {INSTALL_HINT}") from None
  return ray


class _Hub:
  """Driver-side mailbox (a Ray actor): tasks push progress events, the driver pulls them and sets stop flags."""

  def __init__(self) -> None:
    self.events: dict[str, list[dict]] = {}
    self.stop: set[str] = set()

  def push(self, trial_id: str, events: list[dict]) -> bool:
    self.events.setdefault(trial_id, []).extend(events)
    return trial_id in self.stop

  def pull_all(self) -> dict[str, list[dict]]:
    out, self.events = self.events, {}
    return out

  def request_stop(self, trial_id: str) -> None:
    self.stop.add(trial_id)

  def forget(self, trial_id: str) -> list[dict]:
    """Drops the trial; returns its events not pulled yet."""
    self.stop.discard(trial_id)
    return self.events.pop(trial_id, [])


class _Forward:
  """Node-side monitor: forwards progress events to the hub, at most one push per POLL_S; stop once a reply says
  the driver asked."""
  record = None

  def __init__(self, ray: Any, hub: Any, trial_id: str):
    self.ray, self.hub, self.trial_id = ray, hub, trial_id
    self.buffer: list[dict] = []
    self.pushed_at = -math.inf
    self.replies: list[Any] = []
    self.stop = False

  def send(self, events: list[dict]) -> Any:
    """Pushes `events` with what is buffered now; the push's reply."""
    reply = self.hub.push.remote(self.trial_id, [*self.buffer, *events])
    self.replies.append(reply)
    self.buffer, self.pushed_at = [], time.monotonic()
    return reply

  def observe(self, event: dict) -> bool:
    self.buffer.append(event)
    if time.monotonic() >= self.pushed_at + POLL_S:
      self.send([])
    if self.replies:
      ready, self.replies = self.ray.wait(self.replies, num_returns=len(self.replies), timeout=0)
      self.stop = self.stop or any(self.ray.get(ready))
    return self.stop

  def close(self) -> None:
    """Pushes what is buffered and waits until the hub holds every push (the trial's result must not be lost to a
    hub failure: its last events are then lost instead)."""
    try:
      self.ray.get([self.send([])] if self.buffer else self.replies)
    except self.ray.exceptions.RayError:
      pass


def _drain(inbox: queue.Queue) -> list[dict]:
  events = []
  while not inbox.empty():
    events.append(inbox.get())
  return events


def _run_on_node(job: TrialJob, hub: Any, limits: WorkerLimits, env: dict[str, str],
                 pythonpath: tuple[str, ...]) -> tuple[TrialResult, bytes]:
  """The Ray task: run the trial in a worker subprocess on this node; (result, full worker log)."""
  import ray
  forward = _Forward(ray, hub, job.trial_id)
  forward.send([{"type": "started", "host": os.uname().nodename, "pid": os.getpid()}])
  executor = LocalProcessExecutor(limits, env={**os.environ, **env}, pythonpath=pythonpath)
  with tempfile.TemporaryDirectory(prefix="arrl-ray-") as tmp:
    log_path = os.path.join(tmp, "worker.log")
    result = executor.run(dataclasses.replace(job, log_path=log_path), monitor=forward)
    forward.close()
    with open(log_path, "rb") as f:
      return result, f.read()


class RayExecutor:
  """An Executor whose trials are Ray tasks (see the module docstring). `run` is thread-safe."""

  def __init__(self, address: str | None = None, num_cpus: float = 1.0, num_gpus: float = 0.0,
               limits: WorkerLimits | None = None, env: dict[str, str] | None = None,
               pythonpath: tuple[str, ...] = (), lost_grace_s: float = 120.0, init_kwargs: dict | None = None):
    self.ray = ray = import_ray()
    if not ray.is_initialized():
      ray.init(address=address, log_to_driver=False, **(init_kwargs or {}))
    self.num_cpus, self.num_gpus, self.lost_grace_s = num_cpus, num_gpus, lost_grace_s
    self.limits, self.env, self.pythonpath = limits or WorkerLimits(), dict(env or {}), tuple(pythonpath)
    # Nodes import arrl from the driver's checkout where that path exists (a shared filesystem), else their own.
    runtime_env = {"env_vars": {"PYTHONPATH": os.pathsep.join([_ROOT, *self.pythonpath])}}
    # The hub lives on the driver's node: a lost worker node must not take every trial's progress with it.
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    self.hub = ray.remote(num_cpus=0)(_Hub).options(runtime_env=runtime_env, scheduling_strategy=here).remote()
    self._inboxes: dict[str, queue.Queue] = {}   # trial id -> its events, filled by the poller thread
    self._lock = threading.Lock()
    self._poller: threading.Thread | None = None
    self._task = ray.remote(_run_on_node).options(num_cpus=num_cpus, num_gpus=num_gpus, max_retries=0,
                                                  retry_exceptions=False, runtime_env=runtime_env)

  @property
  def on_gpu(self) -> bool:
    """Whether trials train on GPUs: Ray grants them only when each task asks for some."""
    return self.num_gpus > 0

  @property
  def workers(self) -> int:
    """Trials the cluster can run at once with these per-trial resources (at least 1)."""
    res = self.ray.cluster_resources()
    if self.num_gpus:
      return max(1, int(res.get("GPU", 0) // self.num_gpus))
    return max(1, int(res.get("CPU", 1) // max(self.num_cpus, 1e-9)))

  def _poll(self) -> None:
    """Poller thread: moves every trial's events from the hub to its inbox; ends when no trial runs."""
    while True:
      with self._lock:   # held until the batch is in the inboxes: `_close` never runs between pull and put
        if not self._inboxes:
          self._poller = None
          return
        try:
          batch = self.ray.get(self.hub.pull_all.remote())
        except self.ray.exceptions.RayError:   # e.g. Ray shutting down: the trials' own waits report it
          batch = {}
        for trial_id, events in batch.items():
          inbox = self._inboxes.get(trial_id)
          for event in events if inbox is not None else ():
            inbox.put(event)
      time.sleep(POLL_S)

  def _close(self, trial_id: str, inbox: queue.Queue) -> list[dict]:
    """Stops polling for the trial; its events not delivered yet (those in its inbox, then those at the hub)."""
    with self._lock:
      del self._inboxes[trial_id]
      rest = self.hub.forget.remote(trial_id)   # runs after every pull_all already made: no event is taken twice
      events = _drain(inbox)
    try:
      return events + self.ray.get(rest)
    except self.ray.exceptions.RayError:
      return events

  def run(self, job: TrialJob, monitor: Monitor | None = None,
          cancel: Callable[[], bool] | None = None) -> TrialResult:
    ray = self.ray
    started_at, t0 = time.time(), time.monotonic()
    inbox: queue.Queue = queue.Queue()
    with self._lock:
      self._inboxes[job.trial_id] = inbox
      if self._poller is None:
        self._poller = threading.Thread(target=self._poll, daemon=True, name="arrl-ray-poller")
        self._poller.start()
    ref = self._task.remote(job, self.hub, self.limits, self.env, self.pythonpath)
    state = {"started": None, "stop_sent": False}
    try:
      while True:
        done, _ = ray.wait([ref], timeout=POLL_S)
        self._deliver(job, _drain(inbox), monitor, state)
        if done:
          break
        if cancel is not None and cancel():
          ray.cancel(ref, force=True)
          raise TrialCancelled(f"trial {job.trial_id} abandoned on request")
        if state["started"] is not None and time.monotonic() > state["started"] + job.deadline_s + self.lost_grace_s:
          ray.cancel(ref, force=True)
          return self._crash(job, started_at, t0, monitor, f"ray: no result {self.lost_grace_s:.0f} s after the "
                             "trial's deadline (node lost?); task cancelled")
      try:
        result, log = ray.get(ref)
      except ray.exceptions.RayError as e:   # killed worker, lost node, unschedulable task, ...
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        return self._crash(job, started_at, t0, monitor, f"ray: {type(e).__name__}: {first}"[:2000])
    finally:
      rest = self._close(job.trial_id, inbox)
    self._deliver(job, rest, monitor, state)   # the task waited until the hub held its last events
    if job.log_path:
      with open(job.log_path, "ab") as f:
        f.write(log)
    result.abort = monitor.record if monitor is not None else None
    return result

  def _deliver(self, job: TrialJob, events: list[dict], monitor: Monitor | None, state: dict) -> None:
    for event in events:
      if event.get("type") == "started":
        state["started"] = time.monotonic()
        continue
      if monitor is None or state["stop_sent"]:
        continue
      try:
        stop = monitor.observe(event)
      except Exception:  # as in LocalProcessExecutor: a broken monitor costs the early abort, not the trial
        state["stop_sent"] = True
        continue
      if stop:
        state["stop_sent"] = True
        self.hub.request_stop.remote(job.trial_id)

  @staticmethod
  def _crash(job: TrialJob, started_at: float, t0: float, monitor: Monitor | None, error: str) -> TrialResult:
    return TrialResult(trial_id=job.trial_id, status="crash", error=error, total_seconds=time.monotonic() - t0,
                       abort=monitor.record if monitor is not None else None, started_at=started_at,
                       finished_at=time.time())
