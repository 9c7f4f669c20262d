"""What a cohort's client watches on the cluster while its slides run.

- **Liveness**: every worker sends the scheduler a heartbeat every few seconds. A worker whose
  heartbeat has not moved for ``worker_timeout_s`` seconds (frozen: SIGSTOP, a dead host
  whose connection stays half-open) is removed from the scheduler; dask then runs its slides
  on another worker. The scheduler's own limit (``distributed.scheduler.worker-ttl``) is
  5 minutes and belongs to whoever runs it; this one is the run's.
- **Time limit**: a slide stops itself when its time limit runs out (``cohort.guard``). One
  still running ``grace_s`` seconds later (30, or a quarter of the limit when that is
  shorter, at least 2) is stuck where it cannot look (a loop in a library):
  it ends as an error and its worker is removed from the scheduler, so no later slide queues
  behind it.

Only the clock of this process is used (heartbeat times are compared with themselves), so
clocks that differ between machines do not matter. Every call to the scheduler is bounded
by :data:`CALL_TIMEOUT_S`.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

#: Seconds any one call to the scheduler may take before it counts as lost.
CALL_TIMEOUT_S = 10.0
#: A worker silent this long is frozen (``--worker-timeout``).
WORKER_TIMEOUT_S = 60.0
#: A slide still running this long after its own time limit is stuck.
GRACE_S = 30.0


@dataclass
class Findings:
    """One look at the cluster: frozen workers, slides (task keys) past their time limit
    and the workers stuck with them (to remove once those slides are cancelled), and the
    number of worker threads."""

    frozen: list[str] = field(default_factory=list)
    overdue: list[str] = field(default_factory=list)
    stuck: list[str] = field(default_factory=list)
    threads: int = 0


class ClusterWatch:
    """Liveness and time limits of one run's slides (see the module docstring)."""

    def __init__(
        self,
        client: Any,
        *,
        worker_timeout_s: float = WORKER_TIMEOUT_S,
        slide_timeout_s: float | None = None,
        grace_s: float = GRACE_S,
    ) -> None:
        self.client = client
        self.worker_timeout_s = worker_timeout_s
        # a slide stops itself at its next tile batch: give it a quarter of its limit
        grace_s = min(grace_s, max(2.0, (slide_timeout_s or 0.0) / 4))
        self.slide_limit_s = slide_timeout_s + grace_s if slide_timeout_s else None
        self._beats: dict[str, tuple[float, float]] = {}  # address: (last_seen, noticed at)
        self._running: dict[str, tuple[str, float]] = {}  # key: (worker, noticed at)

    def look(self, keys: set[str]) -> Findings:
        """Check the workers and this run's running slides (``keys``: its pending tasks)."""
        now = time.monotonic()
        identity = call(self.client, self.client.scheduler.identity)
        workers = identity["workers"]
        processing = call(self.client, self.client.scheduler.processing)
        findings = Findings(threads=int(identity.get("total_threads") or 0))
        for address, worker in workers.items():
            beat = float(worker.get("last_seen") or 0.0)
            seen, noticed = self._beats.get(address, (None, now))
            if beat != seen:
                self._beats[address] = (beat, now)
            elif now - noticed > self.worker_timeout_s:
                findings.frozen.append(address)
        for address in set(self._beats) - set(workers):
            del self._beats[address]
        running = {str(k): a for a, ks in processing.items() for k in ks if str(k) in keys}
        previous, self._running = self._running, {}
        for key, address in running.items():
            known = previous.get(key)
            self._running[key] = known if known and known[0] == address else (address, now)
        if self.slide_limit_s is not None:
            for key, (address, since) in self._running.items():
                if now - since > self.slide_limit_s and address not in findings.frozen:
                    findings.overdue.append(key)
                    findings.stuck.append(address)
        return findings


def call(client: Any, method: Any, *args: Any, **kwargs: Any) -> Any:
    """``method(*args, **kwargs)`` (a coroutine function: the scheduler's RPC, the client's
    async methods) run by the client, bounded by :data:`CALL_TIMEOUT_S`."""
    return client.sync(method, *args, callback_timeout=CALL_TIMEOUT_S, **kwargs)


def remove_worker(client: Any, address: str) -> None:
    """Take ``address`` out of the scheduler (told to close); its tasks go to other workers."""
    stimulus = f"imilia-remove-{uuid.uuid4().hex[:8]}"
    call(client, client.scheduler.unregister, address=address, stimulus_id=stimulus)
