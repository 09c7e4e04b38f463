"""What the agents still have to take of a topic: the one count `replay` waits on and the SIGTERM
drain of a worker with a broker of its own reports (streams.runtime)."""
import asyncio
from types import SimpleNamespace

from faust.types import TP

from streams import runtime
from streams.app import Progress
from streams.delivery import Hole


def _pipeline(taken: dict[int, int], holes: dict[int, list[Hole]] | None = None):
    progress = Progress()
    progress.taken.update({("case-events", p): offset for p, offset in taken.items()})
    return SimpleNamespace(progress=progress, bootstrap="unused",
                           delivery=SimpleNamespace(holes={TP("case-events", p): list(h) for p, h in (holes or {}).items()}))


def _left(pipeline, ends, committed, monkeypatch) -> int:
    async def committed_offsets(_pipeline, _bootstrap, _topic=None):
        return committed
    monkeypatch.setattr(runtime, "committed_offsets", committed_offsets)
    return asyncio.run(runtime._left_to_take(pipeline, "case-events", ends))


def test_everything_taken_is_nothing_left(monkeypatch):
    pipeline = _pipeline({0: 9, 1: 4})
    assert runtime._taken_to_end(pipeline, "case-events", {0: 10, 1: 5}, {})
    assert _left(pipeline, {0: 10, 1: 5}, {}, monkeypatch) == 0


def test_what_is_not_taken_is_counted_unless_an_earlier_run_committed_it(monkeypatch):
    pipeline = _pipeline({0: 6})
    ends = {0: 10, 1: 5}
    assert not runtime._taken_to_end(pipeline, "case-events", ends, {})
    assert _left(pipeline, ends, {}, monkeypatch) == 3 + 5
    assert _left(pipeline, ends, {1: 5}, monkeypatch) == 3
    assert runtime._taken_to_end(pipeline, "case-events", ends, {0: 10, 1: 5})


def test_holes_faust_left_count_as_not_taken_in_the_wait_and_in_the_drain(monkeypatch):
    """Offsets 3..5 were not delivered (read again by DeliveryWatch.retry); the agents took later
    ones. Until the hole is read, neither the wait nor the drain may count the partition as done."""
    pipeline = _pipeline({0: 9}, holes={0: [Hole(3, 6)]})
    assert not runtime._taken_to_end(pipeline, "case-events", {0: 10}, {})
    assert _left(pipeline, {0: 10}, {}, monkeypatch) == 3
    pipeline.delivery.holes[TP("case-events", 0)].clear()
    assert _left(pipeline, {0: 10}, {}, monkeypatch) == 0


def test_holes_of_another_topic_are_not_this_ones(monkeypatch):
    pipeline = _pipeline({0: 9})
    pipeline.delivery.holes[TP("alerts", 0)] = [Hole(0, 4)]
    assert runtime._taken_to_end(pipeline, "case-events", {0: 10}, {})
    assert _left(pipeline, {0: 10}, {}, monkeypatch) == 0


def test_a_signal_while_a_stop_is_under_way_exits_at_once(monkeypatch):
    """Found by a black-box test: a stop waiting on a broker that was gone ignored every later
    SIGTERM and SIGINT (12 minutes, until kill -9). A signal while a stop is under way now exits."""
    import signal

    exits: list[int] = []
    monkeypatch.setattr(runtime, "_exit_at_once", exits.append)

    async def never_stops(pipeline, worker):
        await asyncio.Event().wait()

    monkeypatch.setattr(runtime, "_stop_worker", never_stops)

    async def run():
        handlers = {}
        loop = asyncio.get_running_loop()
        monkeypatch.setattr(loop, "add_signal_handler", lambda sig, callback: handlers.setdefault(sig, callback))
        pipeline = SimpleNamespace(stopping=False, settings=SimpleNamespace(stop_seconds=50.0),
                                   writer=SimpleNamespace(batch=SimpleNamespace(failed_attempts=0), last_error=None))
        worker = SimpleNamespace(app=SimpleNamespace(conf=SimpleNamespace(stream_wait_empty=True)),
                                 stopping_on_signal=None)
        runtime._stop_on_signals(pipeline, worker)
        handlers[signal.SIGTERM]()  # the stop begins (and hangs)
        await asyncio.sleep(0)
        assert pipeline.stopping and exits == []
        handlers[signal.SIGINT]()
        assert exits == [1]
        worker.stopping_on_signal.cancel()

    asyncio.run(run())


def _signals_and_worker(monkeypatch):
    """The loop's signal handlers (by signal), mode's own handlers (recorded when called), and a worker
    whose start installs them."""
    import signal

    handlers: dict = {}
    loop = asyncio.get_running_loop()
    monkeypatch.setattr(loop, "add_signal_handler",
                        lambda sig, callback, *args: handlers.__setitem__(sig, lambda: callback(*args)))
    modes: list = []

    def install_modes() -> None:  # mode's Worker.install_signal_handlers, as worker.start() begins
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1):
            handlers[sig] = lambda sig=sig: modes.append(sig)

    pipeline = SimpleNamespace(stopping=False, settings=SimpleNamespace(stop_seconds=50.0),
                               writer=SimpleNamespace(batch=SimpleNamespace(failed_attempts=0), last_error=None))
    worker = SimpleNamespace(app=SimpleNamespace(conf=SimpleNamespace(stream_wait_empty=True)),
                             stopping_on_signal=None, install_signal_handlers=install_modes)
    return handlers, modes, pipeline, worker


def test_a_signal_while_the_worker_starts_stops_it_once_started(monkeypatch):
    """Found by a flaky test: SIGTERM while `worker.start()` ran (a busy machine, a slow start) went
    to mode's own handler, whose stop nobody waited for: the worker left its context at once, and
    the loop's close waited 60 s for Faust's consumer thread (its assignment callback's main-thread
    queue cancelled), then exited with an ERROR. The signal is now held, and the worker's own
    stop begins once it has started; mode's other handlers (SIGUSR1) stay."""
    import signal

    stops: list = []

    async def stop_worker(pipeline, worker):
        stops.append(worker)

    monkeypatch.setattr(runtime, "_stop_worker", stop_worker)

    async def run():
        handlers, modes, pipeline, worker = _signals_and_worker(monkeypatch)
        held = runtime._hold_signals_while_starting(worker)
        worker.install_signal_handlers()  # the start begins
        handlers[signal.SIGTERM]()  # while it starts
        assert held and modes == [] and not pipeline.stopping and worker.stopping_on_signal is None
        handlers[signal.SIGUSR1]()
        assert modes == [signal.SIGUSR1]
        runtime._stop_on_signals(pipeline, worker, held=held)  # started
        assert pipeline.stopping
        await worker.stopping_on_signal
        assert stops == [worker]

    asyncio.run(run())


def test_a_second_signal_while_the_worker_starts_exits_at_once(monkeypatch):
    import signal

    exits: list[int] = []
    monkeypatch.setattr(runtime, "_exit_at_once", exits.append)

    async def run():
        handlers, _, _, worker = _signals_and_worker(monkeypatch)
        runtime._hold_signals_while_starting(worker)
        handlers[signal.SIGTERM]()
        assert exits == []
        handlers[signal.SIGINT]()
        assert exits == [1]

    asyncio.run(run())


def test_a_signal_held_while_a_start_takes_too_long_exits(monkeypatch):
    """Review: a start that never ends (a broker out of reach) held a supervisor's one SIGTERM for
    good. A held signal waits `HELD_SIGNAL_EXIT_SECONDS` for the start, then the process exits;
    a start done in time cancels that."""
    import signal

    exits: list[int] = []
    monkeypatch.setattr(runtime, "_exit_at_once", exits.append)
    monkeypatch.setattr(runtime, "HELD_SIGNAL_EXIT_SECONDS", 0.05)

    async def run():
        handlers, _, pipeline, worker = _signals_and_worker(monkeypatch)
        held = runtime._hold_signals_while_starting(worker)
        handlers[signal.SIGTERM]()
        await asyncio.sleep(0.2)
        assert exits == [1]
        exits.clear()
        handlers, _, pipeline, worker = _signals_and_worker(monkeypatch)
        held = runtime._hold_signals_while_starting(worker)
        handlers[signal.SIGTERM]()
        monkeypatch.setattr(runtime, "_stop_worker", lambda pipeline, worker: asyncio.sleep(0))
        runtime._stop_on_signals(pipeline, worker, held=held)  # started in time
        await asyncio.sleep(0.2)
        assert exits == []
        await worker.stopping_on_signal

    asyncio.run(run())


def test_only_the_own_broker_s_death_cuts_a_start_short(monkeypatch):
    """A start waits for its partitions without end: a replay whose own broker died meanwhile waited
    for ever (found by a test), so that death ends it. Another failure meanwhile lets the start
    finish, as before: a stop begun while a start runs could hang (found by review)."""
    import pytest

    monkeypatch.setattr(runtime, "BROKER_WATCH_SECONDS", 0.01)

    class SlowStart:
        started = False

        async def start(self):
            await asyncio.sleep(0.2)
            self.started = True

    def pipeline_failed():
        return SimpleNamespace(failure=RuntimeError("the deadline index could not be rebuilt"))

    broker_alive = SimpleNamespace(process=SimpleNamespace(poll=lambda: None))
    broker_dead = SimpleNamespace(process=SimpleNamespace(poll=lambda: -9))
    for broker in (None, broker_alive):
        worker = SlowStart()
        asyncio.run(runtime._start_unless_broker_gone(pipeline_failed(), worker, broker))
        assert worker.started
    worker = SlowStart()
    with pytest.raises(RuntimeError, match="could not be rebuilt"):
        asyncio.run(runtime._start_unless_broker_gone(pipeline_failed(), worker, broker_dead))
    assert not worker.started


def test_the_first_failure_is_the_one_said():
    """An agent that could not reach a broker that had exited failed the pipeline after the watcher
    had, and its error was said instead of why (`streams.runtime._own_broker_exited`)."""
    from types import SimpleNamespace

    from streams.app import Pipeline

    pipeline = SimpleNamespace(failure=None, failed=asyncio.Event())
    first, then = RuntimeError("the embedded broker (tansu) exited"), RuntimeError("an agent stopped")
    Pipeline.fail(pipeline, first)
    Pipeline.fail(pipeline, then)
    assert pipeline.failure is first and pipeline.failed.is_set()
