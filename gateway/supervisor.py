"""Starts one worker process per model (`python -m workers ...`), restarts it with backoff when it
exits, and stops them all with the gateway. It never imports the workers: they are other programs."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import sys
import time

import structlog

from gateway.config import ModelSpec, Settings
from gateway.router import Router

log = structlog.get_logger()
CRASH_LOOP = 3  # quick exits in a row that mark a model failed (restarts go on, at the backoff)
# glibc's malloc makes an arena per thread up to 8 per core; the engines' thread pools left each
# worker holding memory it no longer used (the OpenVINO chat worker: 338 MB at rest, 320 with two
# arenas, the same tokens/s). A worker that dies in an engine's native code (a signal) leaves its
# Python stack in the log (faulthandler). An operator's own setting in the environment wins.
WORKER_ENV = {"MALLOC_ARENA_MAX": "2", "PYTHONFAULTHANDLER": "1"}


class Supervisor:
    def __init__(self, settings: Settings, router: Router) -> None:
        self.settings, self.router = settings, router
        self.specs = {spec.id: spec for spec in settings.models()}
        self.processes: dict[str, asyncio.subprocess.Process] = {}
        self._tasks: dict[str, list[asyncio.Task[None]]] = {}  # by model: keep its replicas running
        self._background: set[asyncio.Task[None]] = set()  # unloads it started itself
        self._owner: dict[str, str] = {}  # worker id → model
        self._unloading: dict[str, asyncio.Event] = {}  # set once the model's workers are gone
        self._serial = itertools.count(1)
        self._stopping = False
        self._launching: set[asyncio.Future[None]] = set()  # replicas whose first process is not out yet

    def start(self, model: str) -> None:
        """Start the model's workers (its replicas) and keep them running until it is unloaded or
        the gateway stops. Past --max-loaded-models, the least recently used idle model goes."""
        if model in self._tasks:
            return
        self.router.models[model].last_used = time.monotonic()  # idle from now, not from its last use
        limit = self.settings.max_loaded_models
        if limit and len(self._tasks) - len(self._unloading) >= limit:
            self._evict(model)
        spec = self.specs[model]
        loop = asyncio.get_running_loop()
        launches = [loop.create_future() for _ in range(spec.replicas)]
        self._launching.update(launches)
        self._tasks[model] = [asyncio.create_task(self._keep_running(spec, launch)) for launch in launches]

    async def launched(self) -> None:
        """Until each worker started so far has its process (or failed to get one)."""
        await asyncio.gather(*self._launching)

    def _launch_done(self, launch: asyncio.Future[None]) -> None:
        if not launch.done():
            launch.set_result(None)
        self._launching.discard(launch)

    def add(self, spec: ModelSpec) -> None:
        """Serve one more model (an adapter loaded at run time with a worker of its own)."""
        self.specs[spec.id] = spec
        self.router.expect(spec.id)

    async def forget(self, model: str) -> None:
        """Unload a model added at run time and stop serving it."""
        await self.unload(model)
        self.specs.pop(model, None)
        self.router.models.pop(model, None)

    def _evict(self, arriving: str) -> None:
        idle = [
            state
            for name, state in self.router.models.items()
            if name in self._tasks and name not in self._unloading and state.in_flight == 0
        ]
        if not idle:
            log.warning("more models loaded than --max-loaded-models: none is idle", model=arriving)
            return
        victim = min(idle, key=lambda state: state.last_used)
        log.info("unloading the least recently used model", model=victim.name, to_load=arriving)
        self._unload_soon(victim.name)

    async def reap_idle(self, every: float = 1.0) -> None:
        """Unload each model idle for longer than its keep_alive (0: never)."""
        while True:
            await asyncio.sleep(every)
            now = time.monotonic()
            for name in [n for n in self._tasks if n not in self._unloading]:
                timeout, state = self.specs[name].idle_timeout(), self.router.models[name]
                if timeout and state.workers and state.in_flight == 0 and now - state.last_used > timeout:
                    log.info("unloading an idle model", model=name, keep_alive_s=timeout)
                    self._unload_soon(name)

    def _unload_soon(self, model: str) -> asyncio.Event | None:
        """Start unloading in the background (the task is kept until done, and cancelled on stop);
        the event is set once the model's workers are gone. None: the model is not loaded."""
        if model in self._tasks and model not in self._unloading:
            self._unloading[model] = asyncio.Event()  # no restart from here on
            self._background.add(task := asyncio.create_task(self._unload(model)))
            task.add_done_callback(self._background.discard)
        return self._unloading.get(model)

    async def unload(self, model: str) -> None:
        """Let the model's workers finish what they hold (up to the drain timeout), then stop them.
        Unloading a model that is not loaded does nothing; one being unloaded waits for that. The
        caller going away (a client disconnecting) does not stop an unload halfway."""
        gone = self._unload_soon(model)
        if gone is not None:
            await gone.wait()

    async def _unload(self, model: str) -> None:
        self.router.shutdown_workers(drain=True, model=model)
        mine = [p for worker_id, p in self.processes.items() if self._owner[worker_id] == model]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*(p.wait() for p in mine)), self.settings.drain_timeout)
        for process in mine:
            _kill_group(process)
            await process.wait()
        await asyncio.gather(*self._tasks[model], return_exceptions=True)
        del self._tasks[model]
        self.router.unloaded(model)
        self._unloading.pop(model).set()
        log.info("model unloaded", model=model)

    def kill(self, worker_id: str) -> None:
        """SIGKILL the worker's process group: the worker and what it started (a converter)."""
        process = self.processes.get(worker_id)
        if process is not None:
            _kill_group(process)

    async def _keep_running(self, spec: ModelSpec, launch: asyncio.Future[None]) -> None:
        try:
            await self._run_replica(spec, launch)
        finally:
            self._launch_done(launch)

    async def _run_replica(self, spec: ModelSpec, launch: asyncio.Future[None]) -> None:
        backoff = min(1.0, self.settings.restart_backoff_max)
        quick_exits = 0  # in a row, each within a minute of its start
        while not self._stopping and spec.id not in self._unloading:
            worker_id = f"{spec.id}-{next(self._serial)}"
            # a session of its own: kill() reaches the converters it starts, and Ctrl-C at the
            # terminal reaches the gateway alone, which stops its workers itself
            command = self._command(spec, worker_id)
            process = await asyncio.create_subprocess_exec(
                *command, start_new_session=True, env=WORKER_ENV | dict(os.environ)
            )
            self.processes[worker_id], self._owner[worker_id] = process, spec.id
            log.info("worker started", model=spec.id, worker_id=worker_id, pid=process.pid)
            self._launch_done(launch)
            started = asyncio.get_running_loop().time()
            code = await process.wait()
            del self.processes[worker_id], self._owner[worker_id]
            reason = f"exit code {code}" if code >= 0 else f"killed by {signal.Signals(-code).name}"
            self.router.worker_exited(spec.id, worker_id, reason)
            if self._stopping or spec.id in self._unloading:
                return
            if asyncio.get_running_loop().time() - started > 60:  # it ran a while: not a crash loop
                backoff, quick_exits = min(1.0, self.settings.restart_backoff_max), 0
            else:
                quick_exits += 1
            if quick_exits == CRASH_LOOP:
                self.router.models[spec.id].failed = True
                log.error("model failed: its worker keeps exiting", model=spec.id, exits=quick_exits)
            log.warning(
                "worker exited, restarting",
                model=spec.id,
                worker_id=worker_id,
                reason=reason,
                restart_in_s=backoff,
            )
            await asyncio.sleep(backoff)
            self.router.models[spec.id].restarts += 1
            backoff = min(backoff * 2, self.settings.restart_backoff_max)

    def _command(self, spec: ModelSpec, worker_id: str) -> list[str]:
        s = self.settings
        command = [
            sys.executable,
            "-m",
            "workers",
            "--model",
            spec.id,
            "--source",
            spec.source,
            "--engine",
            spec.engine,
            "--task",
            spec.task,
            "--device",
            spec.device,
            "--max-batch",
            str(spec.max_batch or s.max_batch),
            "--connect",
            self.router.address,
            "--cache-dir",
            str(s.cache_dir),
            "--temperature",
            str(spec.temperature),
            "--top-p",
            str(spec.top_p),
            "--worker-id",
            worker_id,
            "--parent-pid",
            str(os.getpid()),
            "--log-format",
            s.log_format,
            "--log-level",
            s.log_level,
        ]
        threads = spec.threads or s.threads
        if threads:
            command += ["--threads", str(threads)]
        if spec.context_length:
            command += ["--context-length", str(spec.context_length)]
        if spec.adapter is not None:  # an adapter with a worker of its own (OpenVINO)
            command += ["--adapter", spec.adapter, "--adapter-scale", str(spec.scale)]
        for name, value in spec.options.items():
            flag = name.replace("_", "-")
            if isinstance(value, bool):  # the worker's flags: --prefix-caching / --no-prefix-caching
                command.append(f"--{flag}" if value else f"--no-{flag}")
            else:
                command += [f"--{flag}", str(value)]
        return command

    async def stop(self, grace: float = 5.0) -> None:
        """Ask every worker to stop, wait `grace` seconds, then kill what is left. One still loading
        its model holds no request and cannot hear the request yet: killed at once."""
        self._stopping = True
        self.router.shutdown_workers(drain=False)
        for worker_id, process in self.processes.items():
            if not self.router.registered(worker_id):
                _kill_group(process)
        processes = list(self.processes.values())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*(p.wait() for p in processes)), grace)
        for process in processes:
            _kill_group(process)
            await process.wait()
        tasks = [task for replicas in self._tasks.values() for task in replicas]
        for task in [*tasks, *self._background]:
            task.cancel()
        await asyncio.gather(*tasks, *self._background, return_exceptions=True)


def _kill_group(process: asyncio.subprocess.Process) -> None:
    """SIGKILL the worker's process group (it leads a session of its own): the worker and what it
    started, such as a converter, which would otherwise run on after an unload."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
