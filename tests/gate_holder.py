"""A separate process that takes session slots through SharedSessionGate, for the tests of
limits held across processes (tests/test_shared_limits.py).

    python gate_holder.py hold SETTINGS_JSON DEVICE [background]
        prints "waiting <limit>" each time it has to wait, "entered <ns>" once inside,
        then holds until a line "release" on stdin, and prints "released <ns>" (the
        last moment it was inside).
    python gate_holder.py cycles SETTINGS_JSON DEVICE COUNT HOLD_SECONDS
        prints "ready", waits for "go" on stdin (so that several start together), then
        enters and leaves COUNT times, holding HOLD_SECONDS (the work), and prints each
        stay as "stay <entered ns> <left ns>".

A SessionLimitsError is printed as "error <type> <message>" (exit status 3). Times are
CLOCK_MONOTONIC, one clock for every process on the machine.
"""

from __future__ import annotations

import json
import sys
import time

from chatbot.shared_limits import SessionLimitsError, SharedSessionGate


def say(line: str) -> None:
    print(line, flush=True)


def main(argv: list[str]) -> int:
    mode, settings, device = argv[0], json.loads(argv[1]), argv[2]
    gate = SharedSessionGate(**settings)
    try:
        if mode == "hold":
            background = argv[3:] == ["background"]
            with gate.session(device, background, on_wait=lambda limit: say(f"waiting {limit}")):
                say(f"entered {time.monotonic_ns()}")
                while sys.stdin.readline().strip() != "release":
                    pass
                left = time.monotonic_ns()  # still inside: another may enter once the slot is given up
            say(f"released {left}")
        elif mode == "cycles":
            count, hold = int(argv[3]), float(argv[4])
            say("ready")
            sys.stdin.readline()
            stays = []
            for _ in range(count):
                with gate.session(device):
                    entered = time.monotonic_ns()
                    time.sleep(hold)  # the session's work
                    stays.append((entered, time.monotonic_ns()))
            for entered, left in stays:
                say(f"stay {entered} {left}")
        else:
            raise SystemExit(f"unknown mode {mode!r}")
    except SessionLimitsError as exc:
        say(f"error {type(exc).__name__} {exc}")
        return 3
    finally:
        gate.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
