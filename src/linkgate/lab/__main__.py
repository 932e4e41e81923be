"""`python -m linkgate.lab list | serve`: the lab from the command line.

`serve` starts a scenario in the foreground and prints, for each instance, a pyodbc connection string
for each ODBC driver found; Ctrl-C (or SIGTERM) stops it and removes everything it created.

The strings never hold the password: they name it `${LINKGATE_LAB_PASSWORD}`, which the user's shell
or `os.path.expandvars` fills in, so they can be copied from a terminal or a log without leaking it.
When the caller did not choose the password (the variable was unset), `serve` makes a random one and
writes it, mode 0600, where the printed `export` line reads it; the file goes when the lab stops.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from linkgate.drivers import OdbcDriver, connection_string, find_drivers
from linkgate.lab.netns import LabNeedsRoot
from linkgate.lab.runner import PASSWORD_VARIABLE, Lab, ensure_password
from linkgate.lab.scenario import ScenarioError, list_scenarios, load_scenario


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m linkgate.lab", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="List the built-in scenarios")
    serve = sub.add_parser("serve", help="Start a scenario in the foreground")
    serve.add_argument("--scenario", default="healthy", help="Scenario name or path to a YAML overlay")
    serve.add_argument("--overlay", action="append", default=[], type=Path, help="Extra overlay file (repeatable)")
    serve.add_argument("--ready-file", type=Path, help="Write where each instance listens here, once ready")
    serve.add_argument(
        "--ephemeral-ports",
        action="store_true",
        help="Listen on free ports and move lab hosts to a free address block (not the scenario's)",
    )
    serve.add_argument("--quiet", action="store_true", help="Print nothing but errors")
    args = parser.parse_args(argv)

    if args.command == "list":
        for name in list_scenarios():
            scenario = load_scenario(name)
            print(f"{name:40} {scenario.description}")
        return 0

    chosen = bool(os.environ.get(PASSWORD_VARIABLE))
    password = ensure_password()  # before loading: the scenario's logins read it
    try:
        scenario = load_scenario(args.scenario, args.overlay)
    except ScenarioError as e:
        print(f"linkgate.lab: {e}", file=sys.stderr)
        return 2
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    lab = Lab(scenario, ephemeral_ports=args.ephemeral_ports)
    try:
        lab.start()
        if lab.hosts is not None:
            _publish(lab.hosts.identity_file, SSH_KEY)
            _publish(lab.hosts.known_hosts, KNOWN_HOSTS)
        if lab.certificate is not None:
            _publish(lab.certificate, CA_FILE)
        if not chosen:
            _publish_text(password, PASSWORD_FILE)
        if not args.quiet:
            _describe(lab, password_file=None if chosen else PASSWORD_FILE)
        if args.ready_file:
            tmp = args.ready_file.with_suffix(".tmp")
            tmp.write_text(json.dumps(lab.ready_document(), indent=2))
            tmp.replace(args.ready_file)
        stop.wait()
    except LabNeedsRoot as e:
        print(f"linkgate.lab: {e}", file=sys.stderr)  # one line, no traceback: lab_control shows it as is
        return 2
    finally:
        lab.stop()  # also after a failed start, which `with` would skip: its work directory goes too
        if not chosen:
            PASSWORD_FILE.unlink(missing_ok=True)
    return 0


SSH_KEY = Path("~/.cache/linkgate/lab/id_ed25519").expanduser()
CA_FILE = Path("~/.cache/linkgate/lab/ca.pem").expanduser()
KNOWN_HOSTS = Path("~/.cache/linkgate/lab/known_hosts").expanduser()
PASSWORD_FILE = Path("~/.cache/linkgate/lab/password").expanduser()
PASSWORD_PLACEHOLDER = "${" + PASSWORD_VARIABLE + "}"


def _publish(source: Path, destination: Path) -> None:
    """Copy a lab credential to the stable path environments/demo.yaml names (mode 0600)."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    destination.unlink(missing_ok=True)
    destination.touch(mode=0o600)
    destination.write_bytes(source.read_bytes())


def _publish_text(text: str, destination: Path) -> None:
    """Write a lab secret the user needs in another shell, readable by the owner only from its first byte."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    destination.unlink(missing_ok=True)
    destination.touch(mode=0o600)
    destination.write_text(text, encoding="utf-8")


def printed_connection_string(driver: OdbcDriver, address: str, port: int) -> str:
    """The connection string `serve` prints: ready for pyodbc once `${LINKGATE_LAB_PASSWORD}` is expanded.

    The placeholder sits in braces (`PWD={${…}}`), so the expanded password may hold `;` (not `}`).
    """
    text = connection_string(
        driver,
        address,
        port,
        user="linkgate",
        password=None,
        database="master",
        encrypt="mandatory",
        trust_server_certificate=True,
        login_timeout=5,
    )
    user = "UID=linkgate;"
    return text.replace(user, f"{user}PWD={{{PASSWORD_PLACEHOLDER}}};", 1)


def _describe(lab: Lab, *, password_file: Path | None) -> None:
    print(f"linkgate lab: scenario {lab.scenario.name} — {lab.scenario.description}")
    if password_file is None:
        print(f"login: linkgate, with the password in your ${PASSWORD_VARIABLE}")
    else:
        print(
            f"login: linkgate, with a random password; in another shell: "
            f'export {PASSWORD_VARIABLE}="$(cat {password_file})"'
        )
    print(
        f"connect: pyodbc.connect(os.path.expandvars(<string>)) — each string names the password {PASSWORD_PLACEHOLDER}"
    )
    drivers = find_drivers()
    for where in lab.listening.values():
        print(f"\n{where.name} ({where.flavour}) on {where.address}:{where.port}")
        for driver in drivers:
            print(f"  {driver.kind:9} {printed_connection_string(driver, where.address, where.port)}")
    print("\nCtrl-C stops the lab.", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
