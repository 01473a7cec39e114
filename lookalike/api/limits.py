"""What one request may cost the API worker: how much decoding runs at once, for how long, and how
slowly a body may arrive.

Decoding is the only step whose memory a client controls (a 143 KB PNG may declare 49 MP: 260 MB at
the peak of its decode, a 130 KB WebP of as many pixels 820 MB), so it runs behind a `DecodeGate`: at
most `concurrency` decodes and `memory` bytes (each decode's estimate, `lookalike.images.decode_memory`)
in flight, a photo that fits passing one that does not (a phone photo is not held behind a queue of
bombs), each waiting at most `wait_s` (then 503 with Retry-After) and decoding for at most `timeout_s`
(then 422). A photo whose decode alone would need more than `memory` is refused before it waits (413).
A decode that overruns keeps its place in the gate until its thread finishes, so the bound holds
however the request ends.

The body's bounds (`lookalike.api.inputs`): its size while it is read, and its arrival rate: after
BODY_GRACE_S it must have come at BODY_MIN_RATE bytes a second or better (as Apache's
mod_reqtimeout's `MinRate`), else 408. A body trickled byte by byte is cut after BODY_GRACE_S,
not held for the whole traffic timeout.

Freed decode buffers go back to the system (`return_large_blocks`): otherwise glibc raises its mmap
threshold to the largest block freed, later image blocks come from per-thread heaps that are not given
back, and the worker's RSS ratcheted from 0.3 to 1.4-1.6 GB over two bursts of 20 bombs (0.3 -> 0.6 GB
and back to 0.33 with it).
"""

from __future__ import annotations

import asyncio
import ctypes
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from lookalike.settings import Settings

T = TypeVar("T")

# The settings' defaults (the settings in brackets, `lookalike.settings`).
# Decodes at once [LOOKALIKE_DECODE_CONCURRENCY]: decoding is CPU-bound and releases the GIL; more than the
# cores gives no throughput. On 2 cores, 4 leaves 2 of asyncio's default 6 threads to the store and presets.
DECODE_CONCURRENCY = 4
# Decode memory in flight [LOOKALIKE_DECODE_MEMORY_MB]: room for one RGB PNG at the pixel limit (50 MP:
# ~350 MB estimated) and phone photos beside it (a 12 MP JPEG: ~100 MB; a 48 MP one, DCT-scaled, as much);
# also the most one photo may need: an RGBA PNG up to ~48 MP, a WebP up to ~29 MP.
DECODE_MEMORY_MB = 512
# Longest wait for the gate [LOOKALIKE_DECODE_WAIT_S]; then 503, "retry later".
DECODE_WAIT_S = 10.0
# Longest decode [LOOKALIKE_DECODE_TIMEOUT_S]: a 49 MP PNG takes about 1 s here, so 10 s is only reached
# by a pathological file (or a starved machine); then 422.
DECODE_TIMEOUT_S = 10.0
# A body's arrival [LOOKALIKE_BODY_GRACE_S, LOOKALIKE_BODY_MIN_RATE]: BODY_GRACE_S for free, then BODY_MIN_RATE bytes a second on average (64 kbit/s). A slower
# body of over ~0.5 MB could not finish within the 60 s traffic timeout anyway; this answers it sooner, and in our shape.
BODY_GRACE_S = 10.0
BODY_MIN_RATE = 8 * 1024
# Blocks of at least this many bytes are mmapped, so freeing them returns them at once (a 2048x2048 RGB
# photo is 12 MB, Pillow's image blocks are up to 16 MB; glibc's own default floats up to 32 MB).
LARGE_BLOCK_BYTES = 4 * 2**20
_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter


def return_large_blocks(threshold: int = LARGE_BLOCK_BYTES) -> bool:
    """Have the C allocator mmap blocks of `threshold` bytes or more, and so unmap them when freed.

    A process-wide setting (glibc's `mallopt(M_MMAP_THRESHOLD)`, as the MALLOC_MMAP_THRESHOLD_ environment
    variable would set it); False where the C library has no such call (musl ignores it, macOS lacks it).
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    return mallopt(_M_MMAP_THRESHOLD, threshold) == 1


class GateBusy(Exception):
    """The decode waited longer than the gate's `wait_s` for room."""


class GateTimeout(Exception):
    """The decode ran longer than the gate's `timeout_s` (it goes on in its thread, holding its room)."""


class DecodeGate:
    """At most `concurrency` calls and `memory` bytes (the calls' declared costs) in flight at once.

    A call whose cost alone exceeds `memory` runs when nothing else does. Waiting calls are admitted in
    arrival order, except that one that fits goes ahead of one that does not.
    """

    def __init__(
        self,
        *,
        concurrency: int = DECODE_CONCURRENCY,
        memory: int = DECODE_MEMORY_MB * 2**20,
        wait_s: float = DECODE_WAIT_S,
        timeout_s: float = DECODE_TIMEOUT_S,
    ) -> None:
        if concurrency < 1 or memory < 1:
            raise ValueError("concurrency and memory must be positive")
        self.concurrency = concurrency
        self.memory = memory
        self.wait_s = wait_s
        self.timeout_s = timeout_s
        self.running = 0
        self.in_flight = 0  # bytes
        self._waiting: deque[tuple[int, asyncio.Future[None]]] = deque()

    @classmethod
    def from_settings(cls, settings: Settings) -> DecodeGate:
        return cls(
            concurrency=settings.decode_concurrency,
            memory=settings.decode_memory_mb * 2**20,
            wait_s=settings.decode_wait_s,
            timeout_s=settings.decode_timeout_s,
        )

    async def run(self, cost: int, work: Callable[[], T]) -> T:
        """`work()` in a worker thread once there is room for `cost` bytes.

        Raises GateBusy after `wait_s` without room, GateTimeout after `timeout_s` of work.
        """
        try:
            async with asyncio.timeout(self.wait_s):
                await self._acquire(cost)
        except TimeoutError:
            raise GateBusy from None
        task = asyncio.ensure_future(asyncio.to_thread(work))
        task.add_done_callback(lambda done: self._finished(cost, done))
        try:
            async with asyncio.timeout(self.timeout_s):
                return await asyncio.shield(task)  # cancelling the request does not cancel the thread
        except TimeoutError:
            raise GateTimeout from None

    def _fits(self, cost: int) -> bool:
        return self.running < self.concurrency and (self.running == 0 or self.in_flight + cost <= self.memory)

    def _take(self, cost: int) -> None:
        self.running += 1
        self.in_flight += cost

    async def _acquire(self, cost: int) -> None:
        if self._fits(cost):
            self._take(cost)
            return
        entry = (cost, asyncio.get_running_loop().create_future())
        self._waiting.append(entry)
        try:
            await entry[1]
        except BaseException:
            if entry in self._waiting:
                self._waiting.remove(entry)
            elif entry[1].done() and not entry[1].cancelled():
                self._release(cost)  # admitted in the same tick it gave up: hand the room on
            raise

    def _finished(self, cost: int, task: asyncio.Future) -> None:
        if not task.cancelled():
            task.exception()  # retrieved: the awaiting request may have left already
        self._release(cost)

    def _release(self, cost: int) -> None:
        self.running -= 1
        self.in_flight -= cost
        for entry in list(self._waiting):
            waiting_cost, future = entry
            if future.done():
                self._waiting.remove(entry)
            elif self._fits(waiting_cost):
                self._waiting.remove(entry)
                self._take(waiting_cost)
                future.set_result(None)
