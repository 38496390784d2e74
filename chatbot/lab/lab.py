"""The Lab: N simulated IOS-XE routers plus one APIC, on loopback, in one event loop.

`Lab` is asyncio-native (start/stop are coroutines); `LabThread` runs one on a private
loop in a daemon thread for synchronous callers such as the shell and pytest fixtures.
`set_fault` and `set_delay` may be called from any thread: when they return, the change
is in force (a DOWN device refuses connections, a restored one accepts them).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import resource
import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import asyncssh

from chatbot.hostkeys import known_entry_name
from chatbot.lab.apic import APIC_NAME, LabApic
from chatbot.lab.devices import DeviceServer, base_server_options, generate_host_keys
from chatbot.lab.model import MAX_DEVICES, PLATFORM, Fault, LabDevice, make_device
from chatbot.lab.netsim import Topology
from chatbot.lab.ssh_session import SessionContext

_T = TypeVar("_T")
_CROSS_THREAD_TIMEOUT = 30.0


def _raise_fd_limit(needed: int) -> None:
    """One socket per device: lift the soft fd limit toward the hard one when it is short."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        # Starting anyway would leave devices that cannot accept a session.
        raise ValueError(f"the lab needs {needed} open files but the hard limit is {hard}: "
                         f"raise it (ulimit -Hn {needed}) or use fewer devices")
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


class Lab:
    def __init__(
        self,
        devices: int = 3,
        delay: float = 0.0,
        port: int = 0,
        username: str = "admin",
        password: str | None = None,
        enable_secret: str | None = None,
        apic_port: int = 0,
        slow_delay: float = 5.0,
        token_timeout: int = 600,
        known_hosts: Path | None = None,
        apic_ca_file: Path | None = None,
    ) -> None:
        """`known_hosts`: where start() publishes the devices' host keys, in OpenSSH's
        format; `apic_ca_file`: where it publishes the APIC's self-signed HTTPS
        certificate (PEM), for clients to verify against. By default both are temporary
        files, removed by stop()."""
        if not 1 <= devices <= MAX_DEVICES:
            raise ValueError(f"a lab has 1 to {MAX_DEVICES} devices")
        if delay < 0 or slow_delay < 0:
            raise ValueError("delays cannot be negative")
        self.username = username
        # Random unless given: the lab must not ship a password that works everywhere.
        self.password = password if password is not None else secrets.token_urlsafe(12)
        self.enable_secret = (
            enable_secret if enable_secret is not None else secrets.token_urlsafe(12)
        )
        self.slow_delay = slow_delay
        self.devices: dict[str, LabDevice] = {}
        for index in range(devices):
            device = make_device(index, port, delay)
            self.devices[device.name] = device
        self._by_index = list(self.devices.values())
        self.apic = LabApic(
            username=username,
            password=self.password,
            port=apic_port,
            token_timeout=token_timeout,
            slow_delay=slow_delay,
        )
        self._servers: dict[str, DeviceServer] = {}
        self._host_keys: list[asyncssh.SSHKey] = []
        self.known_hosts = known_hosts
        self.apic_ca_file = apic_ca_file
        self._temp_dir: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None

    @property
    def started(self) -> bool:
        return self._loop is not None

    def _device_up(self, index: int) -> bool:
        return 0 <= index < len(self._by_index) and self._by_index[index].fault is not Fault.DOWN

    async def start(self) -> None:
        if self._loop is not None:
            raise RuntimeError("lab already started")
        _raise_fd_limit(len(self.devices) + 1024)
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._host_keys = generate_host_keys()
        options = base_server_options(self._host_keys)
        context = SessionContext(
            enable_secret=self.enable_secret,
            slow_delay=self.slow_delay,
            topology=Topology(len(self.devices), self._device_up),
            started_at=time.monotonic(),
        )
        try:
            for device in self.devices.values():
                self._servers[device.name] = DeviceServer(
                    device, context, options, self.username, self.password
                )
            listening = [
                server.start_listening()
                for server in self._servers.values()
                if server.device.fault is not Fault.DOWN
            ]
            await asyncio.gather(*listening)
            self._publish_host_keys()
            self.apic.publish_certificate(self.apic_ca_file or Path(self._private_dir()) / "apic-ca.pem")
            await self.apic.start()
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        servers, self._servers = list(self._servers.values()), {}
        await asyncio.gather(*(server.close() for server in servers), return_exceptions=True)
        await self.apic.stop()
        if self._temp_dir is not None:
            # forget only the files that lived there, not paths the caller chose
            if self.known_hosts is not None and self.known_hosts.parent == Path(self._temp_dir):
                self.known_hosts = None
            if self.apic.ca_file is not None and self.apic.ca_file.parent == Path(self._temp_dir):
                self.apic.ca_file = None
            shutil.rmtree(self._temp_dir, ignore_errors=True)
            self._temp_dir = None
        self._loop = None
        self._loop_thread = None

    def _private_dir(self) -> str:
        if self._temp_dir is None:
            self._temp_dir = tempfile.mkdtemp(prefix="netbot-lab-")
        return self._temp_dir

    def _publish_host_keys(self) -> None:
        """Write every device's host keys as `[address]:port key` lines, so clients can
        check them strictly although the keys are new at every start. Written whole and
        renamed into place: a reader never sees half a file."""
        if self.known_hosts is None:
            self.known_hosts = Path(self._private_dir()) / "known_hosts"
        public = [key.export_public_key("openssh").decode().strip() for key in self._host_keys]
        lines = [f"{known_entry_name(device.host, device.port)} {key}\n"
                 for device in self.devices.values() if device.port for key in public]
        self.known_hosts.parent.mkdir(parents=True, exist_ok=True)
        partial = self.known_hosts.with_name(self.known_hosts.name + ".new")
        partial.write_text("".join(lines), encoding="utf-8")
        os.chmod(partial, 0o644)
        partial.replace(self.known_hosts)

    # -- runtime controls, callable from any thread --------------------------------------

    def _on_loop(self, action: Callable[[], _T]) -> _T:
        loop = self._loop
        if loop is None or self._loop_thread == threading.get_ident() or not loop.is_running():
            return action()
        done: concurrent.futures.Future[_T] = concurrent.futures.Future()

        def call() -> None:
            try:
                done.set_result(action())
            except BaseException as exc:  # hand any failure to the calling thread
                done.set_exception(exc)

        loop.call_soon_threadsafe(call)
        return done.result(timeout=_CROSS_THREAD_TIMEOUT)

    def set_fault(self, name: str, fault: Fault | str | None) -> None:
        """Put device `name` (or "apic1") into a fault mode; None restores it."""
        mode = Fault(fault) if fault is not None else None
        if name == APIC_NAME:
            self._on_loop(lambda: self.apic.apply_fault(mode))
            return
        device = self._device(name)
        server = self._servers.get(name)
        if server is None:  # not started yet: start() honours the attribute
            device.fault = mode
            return
        port = device.port
        self._on_loop(lambda: server.apply_fault(mode))
        if device.port != port:  # first listened now, on a port the kernel chose
            self._on_loop(self._publish_host_keys)

    def set_delay(self, name: str, delay: float) -> None:
        """Per-command delay of a device (or the APIC's per-request delay), in seconds."""
        if delay < 0:
            raise ValueError("delay cannot be negative")
        if name == APIC_NAME:
            self.apic.delay = delay
        else:
            self._device(name).delay = delay

    def _device(self, name: str) -> LabDevice:
        try:
            return self.devices[name]
        except KeyError:
            raise KeyError(f"no lab device named {name!r}") from None

    # -- inventory -----------------------------------------------------------------------

    def nornir_inventory(self) -> dict[str, Any]:
        """Hosts, groups and defaults in the shape of Nornir's SimpleInventory files."""
        hosts = {
            device.name: {
                "hostname": device.host,
                "port": device.port,
                "platform": PLATFORM,
                "groups": list(device.groups),
                "data": {"site": device.site, "role": device.role},
            }
            for device in self.devices.values()
        }
        group_names = sorted({group for device in self.devices.values() for group in device.groups})
        groups: dict[str, Any] = {name: {"data": {"role": name}} for name in group_names}
        defaults = {
            "username": self.username,
            "password": self.password,
            "connection_options": {
                "scrapli": {
                    "extras": {
                        "auth_strict_key": False,
                        "transport": "ssh2",
                        "auth_secondary": self.enable_secret,
                    }
                }
            },
        }
        return {"hosts": hosts, "groups": groups, "defaults": defaults}


async def run_lab_forever(lab: Lab) -> None:
    """Start `lab`, print nothing, serve until cancelled, then stop it."""
    await lab.start()
    try:
        await asyncio.Event().wait()
    finally:
        await lab.stop()


class LabThread:
    """A Lab on its own event loop in a daemon thread, for synchronous code."""

    def __init__(self, **lab_kwargs: Any) -> None:
        self.lab = Lab(**lab_kwargs)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def start(self, timeout: float = 120.0) -> Lab:
        """Start the lab and block until every device and the APIC are listening."""
        if self._thread is not None:
            raise RuntimeError("lab thread already started")
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._run, args=(ready,), name="lab", daemon=True)
        self._thread.start()
        try:
            ready.result(timeout=timeout)
        except BaseException:
            self._thread.join(timeout=5)
            self._thread = None
            raise
        return self.lab

    def _run(self, ready: concurrent.futures.Future[None]) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            try:
                loop.run_until_complete(self.lab.start())
            except BaseException as exc:
                ready.set_exception(exc)
                return
            ready.set_result(None)
            loop.run_forever()
        finally:
            try:
                pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
                for task in pending:
                    task.cancel()
                if pending:
                    loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.run_until_complete(loop.shutdown_default_executor())
            finally:
                loop.close()
                self._loop = None

    def stop(self, timeout: float = 60.0) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self.lab.stop(), loop).result(timeout=timeout)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=timeout)
            self._thread = None

    def __enter__(self) -> Lab:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
