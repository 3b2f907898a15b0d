"""The scheduler's decisions, driven with a fake engine: no processes, no sleeps.

Load on demand, waiting or not while a model loads, eviction by least recent use within a
memory budget and a loaded-model limit, back-off after failed starts but none after a
crash, unloading after keep-alive, and how each domain error is answered over HTTP.
The same decisions run against real engines in test_serving_supervisor.py.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from famous.runtimes import EngineStartError
from famous.serve.errors import from_domain
from famous.serve.models import ModelSpec
from famous.serve.scheduler import (
    FAILURES_BEFORE_BACKOFF,
    EngineFailed,
    ModelLoading,
    ModelNotFound,
    NoRoom,
    Scheduler,
)

MIB = 1 << 20


class FakeEngine:
    """What the scheduler reads of an engine process; ``ready`` gates its health wait."""

    def __init__(self, spec: ModelSpec, ready: asyncio.Event | None) -> None:
        self.name = spec.name
        self.server = "fake"
        self.host = "127.0.0.1"
        self.port = 1
        self.pid = 1
        self.started_at = 0.0
        self.log_path = Path("/nonexistent/fake.log")
        self.base_url = "http://127.0.0.1:1"
        self.exit_status: int | None = None
        self.stops = 0
        self._ready = ready

    def alive(self) -> bool:
        return self.exit_status is None

    def returncode(self) -> int | None:
        return self.exit_status

    def stop(self, grace: float = 10.0) -> int:
        self.stops += 1
        self.exit_status = 0
        return 0

    async def wait_healthy_async(self, timeout: float) -> None:
        if self._ready is not None:
            await self._ready.wait()


class FakeModels:
    def __init__(self, *specs: ModelSpec) -> None:
        self.specs = {s.name: s for s in specs}

    def get(self, name: str) -> ModelSpec | None:
        return self.specs.get(name)

    def names(self) -> list[str]:
        return sorted(self.specs)


class Launcher:
    """Records launches; fails the first ``failures`` of them like an engine that exits."""

    def __init__(self, failures: int = 0, ready: asyncio.Event | None = None) -> None:
        self.engines: list[FakeEngine] = []
        self.failures = failures
        self.ready = ready

    def __call__(self, spec: ModelSpec) -> FakeEngine:
        if self.failures:
            self.failures -= 1
            raise EngineStartError(f"{spec.name} exited with status 1", ["bad model file"])
        engine = FakeEngine(spec, self.ready)
        self.engines.append(engine)
        return engine


def spec(name: str, mib: int = 10) -> ModelSpec:
    return ModelSpec(name=name, path=Path(f"/models/{name}.gguf"), memory_bytes=mib * MIB)


def scheduler(launcher: Launcher, *specs: ModelSpec, **options) -> Scheduler:
    options.setdefault("memory_budget", 100 * MIB)
    models = FakeModels(*specs)
    return Scheduler(models, launcher=launcher, record=False, **options)  # type: ignore[arg-type]


def run(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, timeout=5))


def test_a_model_loads_on_first_use_and_is_reused() -> None:
    async def go() -> None:
        launcher = Launcher()
        sched = scheduler(launcher, spec("a"))
        first = await sched.acquire("a")
        assert first.state == "ready" and first.active == 1
        sched.release(first)
        again = await sched.acquire("a")
        assert again is first and len(launcher.engines) == 1 and again.requests == 2
        sched.release(again)
        await sched.close()
        assert launcher.engines[0].stops == 1  # closing the scheduler stops its engines

    run(go())


def test_an_unknown_model_names_the_available_ones() -> None:
    with pytest.raises(ModelNotFound) as info:
        run(scheduler(Launcher(), spec("a"), spec("b")).acquire("c"))
    answer = from_domain(info.value)
    assert answer.status == 404 and answer.param == "model"
    assert answer.body()["error"]["available"] == ["a", "b"]


def test_a_caller_that_will_not_wait_gets_model_loading_then_the_model() -> None:
    async def go() -> None:
        ready = asyncio.Event()
        sched = scheduler(Launcher(ready=ready), spec("a"))
        with pytest.raises(ModelLoading) as info:
            await sched.acquire("a", wait=0)
        answer = from_domain(info.value)
        assert answer.status == 503 and int(answer.headers["Retry-After"]) >= 1
        assert sched.deployments["a"].state == "starting"
        ready.set()
        dep = await sched.acquire("a")  # waits for the same load, does not start another
        assert dep.state == "ready" and len(sched.launcher.engines) == 1  # type: ignore[attr-defined]

    run(go())


def test_the_least_recently_used_idle_model_is_evicted_to_make_room() -> None:
    async def go() -> None:
        launcher = Launcher()
        sched = scheduler(launcher, spec("a", 40), spec("b", 40), spec("c", 40))
        for name in ("a", "b"):
            sched.release(await sched.acquire(name))
        sched.release(await sched.acquire("a"))  # a is now the most recently used
        await sched.acquire("c")  # 120 MiB > 100: b goes
        states = {name: dep.state for name, dep in sched.deployments.items()}
        assert states == {"a": "ready", "b": "stopped", "c": "ready"}

    run(go())


def test_no_room_when_every_loaded_model_is_busy_or_the_model_is_too_big() -> None:
    async def go() -> None:
        sched = scheduler(Launcher(), spec("a", 60), spec("b", 60), spec("huge", 500))
        await sched.acquire("a")  # never released: busy
        with pytest.raises(NoRoom, match="busy"):
            await sched.acquire("b")
        assert sched.deployments["b"].state == "stopped"  # not a failure of its engine
        with pytest.raises(NoRoom, match="budget") as info:
            await sched.acquire("huge")
        assert from_domain(info.value).status == 507

    run(go())


def test_the_loaded_model_limit_evicts_too() -> None:
    async def go() -> None:
        sched = scheduler(Launcher(), spec("a"), spec("b"), max_loaded=1, memory_budget=None)
        sched.release(await sched.acquire("a"))
        sched.release(await sched.acquire("b"))
        assert sched.deployments["a"].state == "stopped"

    run(go())


def test_repeated_failed_starts_back_off() -> None:
    async def go() -> None:
        launcher = Launcher(failures=FAILURES_BEFORE_BACKOFF)
        sched = scheduler(launcher, spec("a"))
        for _ in range(FAILURES_BEFORE_BACKOFF):
            with pytest.raises(EngineFailed) as info:
                await sched.acquire("a")
            assert info.value.code == "engine_failed" and "bad model file" in str(info.value)
        with pytest.raises(EngineFailed) as info:
            await sched.acquire("a")  # the engine would start now, but it is backed off
        assert info.value.code == "engine_backoff" and info.value.retry_after >= 1
        assert launcher.engines == []
        assert "Retry-After" in from_domain(info.value).headers

    run(go())


def test_a_crash_while_serving_restarts_at_once() -> None:
    """An engine killed by one request must not lock the others out: no back-off."""

    async def go() -> None:
        launcher = Launcher()
        sched = scheduler(launcher, spec("a"))
        for crash in range(FAILURES_BEFORE_BACKOFF + 1):
            dep = await sched.acquire("a")
            sched.release(dep)
            launcher.engines[-1].exit_status = -11  # SIGSEGV
            await sched.check_engines()
            assert dep.state == "failed" and dep.crashes == crash + 1
        assert (await sched.acquire("a")).state == "ready"
        assert len(launcher.engines) == FAILURES_BEFORE_BACKOFF + 2

    run(go())


def test_idle_models_unload_after_keep_alive_busy_ones_stay() -> None:
    async def go() -> None:
        sched = scheduler(Launcher(), spec("idle"), spec("busy"), keep_alive=0)
        sched.release(await sched.acquire("idle"))
        await sched.acquire("busy")
        await sched.check_engines()
        assert sched.deployments["idle"].state == "stopped"
        assert sched.deployments["busy"].state == "ready"

    run(go())
