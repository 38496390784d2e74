"""The lab's IOS CLI on stdin/stdout, for a real OpenSSH server's ForceCommand.

sshd gives the session a pty. As on a device, this echoes what it is sent character by
character (scrapli waits for the echo of a command before it sends Enter) and answers a
line when Enter comes, so echo and answers keep their order; the pty's own echo and
line editing are turned off.
Usage: ios_stdio_shell.py HOSTNAME ENABLE_SECRET_FILE
"""

from __future__ import annotations

import os
import sys
import termios
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from chatbot.lab.configs import device_facts  # noqa: E402
from chatbot.lab.ios_cli import IosCli, Kind  # noqa: E402
from chatbot.lab.netsim import Topology  # noqa: E402


def write(text: str) -> None:
    os.write(1, text.encode())


def main() -> int:
    name, secret_file = sys.argv[1], Path(sys.argv[2])
    cli = IosCli(device_facts(name), Topology(3), secret_file.read_text().strip())
    attrs = termios.tcgetattr(0)
    attrs[3] &= ~(termios.ECHO | termios.ICANON)
    attrs[6][termios.VMIN], attrs[6][termios.VTIME] = 1, 0
    termios.tcsetattr(0, termios.TCSANOW, attrs)
    write("\n" + cli.prompt)
    line: list[str] = []
    reading_secret = False
    while True:
        data = os.read(0, 4096)
        if not data:
            return 0
        for char in data.decode(errors="replace"):
            if char not in "\r\n":
                line.append(char)
                if not reading_secret:
                    write(char)
                continue
            text, line = "".join(line), []
            write("\n")
            if reading_secret:
                reading_secret = False
                if not cli.try_enable(text):
                    write("% Access denied\n\n")
                write(cli.prompt)
                continue
            parsed = cli.parse(text)
            if parsed.kind is Kind.EXIT:
                return 0
            if parsed.kind is Kind.ENABLE and not cli.privileged:
                write("Password: ")
                reading_secret = True
                continue
            write("".join(f"{out}\n" for out in cli.run(parsed)) + cli.prompt)


if __name__ == "__main__":
    sys.exit(main())
