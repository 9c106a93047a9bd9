"""`icswatch serve` (the console) and `icswatch user` (its accounts)."""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path
from typing import Any, TextIO

from console.accounts import ROLES, AccountError, Accounts
from console.errors import UsageError
from console.paths import console_state_path, site_rules_dir
from console.state import ConsoleState, StateError
from console.stores.base import Store, StoreError


def add_serve_commands(commands: Any) -> None:
    serve = commands.add_parser("serve", help="run the console (web UI and HTTP API)")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (default 127.0.0.1; 0.0.0.0 for all)")
    serve.add_argument("--port", type=int, default=8080, help="default 8080")
    serve.add_argument(
        "--store", metavar="PATH|URL",
        help="the alert store: an embedded store file (default: the one `icswatch replay` "
             "writes) or an Elasticsearch URL (credentials from ICSWATCH_ES_USERNAME/"
             "_PASSWORD or ICSWATCH_ES_API_KEY, CA file from ICSWATCH_ES_CA_CERTS)")
    _state_option(serve)
    serve.add_argument("--site-rules", metavar="DIR", type=Path,
                       help="uploaded rule packs and rule switches (default: "
                            "$ICSWATCH_SITE_RULES, else rules/ in the data folder)")
    serve.add_argument("--tls-cert", metavar="FILE", help="serve HTTPS with this certificate")
    serve.add_argument("--tls-key", metavar="FILE", help="and this private key")
    serve.add_argument("--silent-after", type=float, default=300.0, metavar="SECONDS",
                       help="a live sensor silent this long is shown as silent (default 300)")

    user = commands.add_parser("user", help="manage console users")
    sub = user.add_subparsers(dest="user_command", metavar="ACTION", required=True,
                              parser_class=type(user))
    add = sub.add_parser("add", help="create a user (the first admin too)")
    add.add_argument("username")
    add.add_argument("--role", choices=ROLES, required=True)
    add.add_argument("--display-name")
    add.add_argument("--password-stdin", action="store_true",
                     help="read the password from the first line of stdin (no prompt)")
    _state_option(add)
    password = sub.add_parser("passwd", help="set a user's password (ends their sessions)")
    password.add_argument("username")
    password.add_argument("--password-stdin", action="store_true")
    _state_option(password)
    role = sub.add_parser("role", help="change a user's role")
    role.add_argument("username")
    role.add_argument("role", choices=ROLES)
    _state_option(role)
    remove = sub.add_parser("remove", help="delete a user")
    remove.add_argument("username")
    _state_option(remove)
    listing = sub.add_parser("list", help="list users")
    _state_option(listing)


def _state_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--state", metavar="PATH", type=Path,
                        help="the console database (default: $ICSWATCH_CONSOLE_DB, else "
                             "console.db in the data folder)")


def _open_state(path: Path | None) -> ConsoleState:
    try:
        return ConsoleState(path or console_state_path())
    except StateError as exc:
        raise UsageError(str(exc)) from None


def _password(args: argparse.Namespace, stdin: TextIO) -> str:
    if args.password_stdin:
        line = stdin.readline()
        return line.rstrip("\r\n")
    if not stdin.isatty():
        raise UsageError("no terminal to ask for the password: use --password-stdin")
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        raise UsageError("the two passwords differ")
    return first


def run_user_command(args: argparse.Namespace, out: TextIO) -> int:
    state = _open_state(args.state)
    try:
        accounts = Accounts(state)
        command = args.user_command
        if command == "add":
            user = accounts.add_user(args.username, _password(args, sys.stdin), args.role,
                                     args.display_name)
            out.write(f"user {user.username} ({user.role}) created in {state.path}\n")
        elif command == "passwd":
            accounts.set_password(args.username, _password(args, sys.stdin))
            out.write(f"password of {args.username} changed; their sessions ended\n")
        elif command == "role":
            accounts.set_role(args.username, args.role)
            out.write(f"{args.username} is now {args.role}\n")
        elif command == "remove":
            accounts.remove_user(args.username)
            out.write(f"user {args.username} removed\n")
        else:
            for user in accounts.users():
                out.write(f"{user.username:<24} {user.role:<8} {user.display_name}\n")
        return 0
    except AccountError as exc:
        raise UsageError(str(exc)) from None
    finally:
        state.close()


def open_alert_store(location: str | None) -> Store:
    """The embedded store (default path as `icswatch replay` uses) or
    Elasticsearch for a URL; bad usage when it cannot be opened."""
    try:
        if location is not None and location.startswith(("http://", "https://")):
            from console.stores.elasticsearch import ElasticsearchStore

            store = ElasticsearchStore.from_environment(location)
            store.install_templates()
            return store
        from console.stores.sqlite import SqliteStore, default_path

        return SqliteStore(Path(location) if location else default_path())
    except StoreError as exc:
        raise UsageError(str(exc)) from None


def run_serve(args: argparse.Namespace, err: TextIO) -> int:
    import uvicorn

    from console.app import ConsoleConfig, create_app

    if (args.tls_cert is None) != (args.tls_key is None):
        raise UsageError("--tls-cert and --tls-key go together")
    if not 0 < args.port < 65536:
        raise UsageError(f"--port {args.port}: 1 to 65535")
    state = _open_state(args.state)
    store = open_alert_store(args.store)
    app = create_app(ConsoleConfig(store=store, state=state,
                                   site_rules=args.site_rules or site_rules_dir(),
                                   silent_after=args.silent_after))
    if not Accounts(state).users():
        err.write("icswatch: no console user yet; create the first admin with "
                  "`icswatch user add NAME --role admin`\n")
    scheme = "https" if args.tls_cert else "http"
    err.write(f"icswatch: console on {scheme}://{args.host}:{args.port}/\n")
    err.flush()
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning",
                    ssl_certfile=args.tls_cert, ssl_keyfile=args.tls_key,
                    timeout_graceful_shutdown=3)
    finally:
        store.close()
        state.close()
    return 0
