"""`python -m linkgate.lab list | serve`: the lab from the command line.

`serve` starts a scenario in the foreground and prints, for each instance, a ready pyodbc connection
string for each ODBC driver found; Ctrl-C (or SIGTERM) stops it and removes everything it created.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

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
    serve.add_argument("--ephemeral-ports", action="store_true", help="Listen on free ports, not the scenario's")
    serve.add_argument("--quiet", action="store_true", help="Print nothing but errors")
    args = parser.parse_args(argv)

    if args.command == "list":
        for name in list_scenarios():
            scenario = load_scenario(name)
            print(f"{name:40} {scenario.description}")
        return 0

    try:
        scenario = load_scenario(args.scenario, args.overlay)
    except ScenarioError as e:
        print(f"linkgate.lab: {e}", file=sys.stderr)
        return 2
    ensure_password()
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with Lab(scenario, ephemeral_ports=args.ephemeral_ports) as lab:
        if lab.hosts is not None:
            _publish(lab.hosts.identity_file, SSH_KEY)
            _publish(lab.hosts.known_hosts, KNOWN_HOSTS)
        if lab.certificate is not None:
            _publish(lab.certificate, CA_FILE)
        if not args.quiet:
            _describe(lab)
        if args.ready_file:
            tmp = args.ready_file.with_suffix(".tmp")
            tmp.write_text(json.dumps(lab.ready_document(), indent=2))
            tmp.replace(args.ready_file)
        stop.wait()
    return 0


SSH_KEY = Path("~/.cache/linkgate/lab/id_ed25519").expanduser()
CA_FILE = Path("~/.cache/linkgate/lab/ca.pem").expanduser()
KNOWN_HOSTS = Path("~/.cache/linkgate/lab/known_hosts").expanduser()


def _publish(source: Path, destination: Path) -> None:
    """Copy a lab credential to the stable path environments/demo.yaml names (mode 0600)."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    destination.unlink(missing_ok=True)
    destination.touch(mode=0o600)
    destination.write_bytes(source.read_bytes())


def _describe(lab: Lab) -> None:
    from linkgate.drivers import connection_string, find_drivers

    print(f"linkgate lab: scenario {lab.scenario.name} — {lab.scenario.description}")
    print(f"login: linkgate, password in ${PASSWORD_VARIABLE} (export it to connect from another shell)")
    drivers = find_drivers()
    for where in lab.listening.values():
        print(f"\n{where.name} ({where.flavour}) on {where.address}:{where.port}")
        for driver in drivers:
            text = connection_string(driver, where.address, where.port, user="linkgate",
                                     password="${" + PASSWORD_VARIABLE + "}", database="master",
                                     encrypt="mandatory", trust_server_certificate=True, server_certificate=None,
                                     login_timeout=5, extra={})
            print(f"  {driver.kind:9} {text}")
    print("\nCtrl-C stops the lab.", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
