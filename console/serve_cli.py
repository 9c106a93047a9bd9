"""`icswatch serve` (the console), `icswatch user` (its accounts) and
`icswatch tier` (its organisations and child links)."""

from __future__ import annotations

import argparse
import getpass
import ssl
import sys
from pathlib import Path
from typing import Any, TextIO

from console.accounts import ROLES, AccountError, Accounts
from console.errors import UsageError
from console.paths import console_state_path, site_rules_dir
from console.state import ConsoleState, StateError
from console.stores.base import Store, StoreError
from console.tiers import Organizations, TierConfig, TierConfigError, load_tier_config


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
    _tier_option(serve)
    serve.add_argument("--tls-client-ca", metavar="FILE",
                       help="require client certificates signed by this CA (mutual TLS "
                            "for the links of child consoles)")

    user = commands.add_parser("user", help="manage console users")
    sub = user.add_subparsers(dest="user_command", metavar="ACTION", required=True,
                              parser_class=type(user))
    add = sub.add_parser("add", help="create a user (the first admin too)")
    add.add_argument("username")
    add.add_argument("--role", choices=ROLES, required=True)
    add.add_argument("--display-name")
    add.add_argument("--org", metavar="ORG_ID",
                     help="the organisation the user belongs to (default: this console's "
                          "own); a provincial console can host users of its enterprises")
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

    tier = commands.add_parser("tier", help="organisations and links between tiers")
    tier_sub = tier.add_subparsers(dest="tier_command", metavar="ACTION", required=True,
                                   parser_class=type(tier))
    child = tier_sub.add_parser(
        "add-child", help="register an enterprise (at a province) or a province (at the "
                          "national centre) and print the token its uplink uses")
    child.add_argument("org_id")
    child.add_argument("--name", required=True)
    child.add_argument("--industry")
    child.add_argument("--city")
    child.add_argument("--token-file", type=Path, metavar="FILE",
                       help="write the token to FILE (mode 0600) instead of printing it")
    _tier_option(child)
    _state_option(child)
    grade = tier_sub.add_parser("grade", help="mark a key enterprise and grade its risk")
    grade.add_argument("org_id")
    grade.add_argument("--grade", choices=("high", "medium", "low"))
    grade.add_argument("--key", action=argparse.BooleanOptionalAction, default=None,
                       help="a key enterprise (--no-key: not one)")
    _tier_option(grade)
    _state_option(grade)
    orgs = tier_sub.add_parser("orgs", help="list the organisations this console knows")
    _tier_option(orgs)
    _state_option(orgs)


def _state_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--state", metavar="PATH", type=Path,
                        help="the console database (default: $ICSWATCH_CONSOLE_DB, else "
                             "console.db in the data folder)")


def _tier_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tier", metavar="FILE", type=Path,
                        help="this console's tier file (tier:, id:, name:, uplink:); "
                             "without it the console is one enterprise on its own")


def _tier(path: Path | None) -> TierConfig:
    if path is None:
        return TierConfig.standalone()
    try:
        return load_tier_config(path)
    except TierConfigError as exc:
        raise UsageError(str(exc)) from None


def run_tier_command(args: argparse.Namespace, out: TextIO) -> int:
    tier = _tier(args.tier)
    state = _open_state(args.state)
    try:
        orgs = Organizations(state, tier)
        command = args.tier_command
        if command == "add-child":
            try:
                token = orgs.add_child(args.org_id, args.name, industry=args.industry,
                                       city=args.city)
            except ValueError as exc:
                raise UsageError(str(exc)) from None
            if args.token_file is not None:
                args.token_file.touch(mode=0o600)
                args.token_file.write_text(token + "\n")
                out.write(f"{args.org_id} registered; its link token is in {args.token_file}\n")
            else:
                out.write(token + "\n")
        elif command == "grade":
            try:
                org = orgs.set_grading(args.org_id, key_enterprise=args.key, grade=args.grade)
            except KeyError:
                raise UsageError(f"no organisation {args.org_id} here") from None
            except ValueError as exc:
                raise UsageError(str(exc)) from None
            out.write(f"{org.id}: grade {org.grade or '-'}, "
                      f"{'key enterprise' if org.key_enterprise else 'not a key enterprise'}\n")
        else:
            for org in orgs.all():
                out.write(f"{org.id:<24} {org.kind:<10} {org.parent or '-':<16} "
                          f"{org.grade or '-':<6} {'key' if org.key_enterprise else '':<3} "
                          f"{org.name}\n")
        return 0
    finally:
        state.close()


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
            if args.org is not None and not state.rows(
                    "SELECT 1 FROM organizations WHERE id = ?", (args.org,)):
                raise UsageError(f"no organisation {args.org} in {state.path} (register it "
                                 "first: icswatch tier add-child)")
            user = accounts.add_user(args.username, _password(args, sys.stdin), args.role,
                                     args.display_name, args.org)
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
                out.write(f"{user.username:<24} {user.role:<8} {user.org or '-':<16} "
                          f"{user.display_name}\n")
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
    if args.tls_client_ca is not None and args.tls_cert is None:
        raise UsageError("--tls-client-ca needs --tls-cert and --tls-key")
    tier = _tier(args.tier)
    state = _open_state(args.state)
    store = open_alert_store(args.store)
    app = create_app(ConsoleConfig(store=store, state=state,
                                   site_rules=args.site_rules or site_rules_dir(),
                                   silent_after=args.silent_after, tier=tier))
    forwarder = None
    if tier.uplink is not None:
        from console.spool import SpoolError
        from console.uplink import Forwarder

        try:
            forwarder = Forwarder(tier, store, state, app.state.orgs, app.state.notices)
        except (SpoolError, OSError, ssl.SSLError) as exc:
            raise UsageError(f"uplink: {exc}") from None
        app.state.forwarder = forwarder
        forwarder.start()
    if not Accounts(state).users():
        err.write("icswatch: no console user yet; create the first admin with "
                  "`icswatch user add NAME --role admin`\n")
    scheme = "https" if args.tls_cert else "http"
    err.write(f"icswatch: console on {scheme}://{args.host}:{args.port}/\n")
    err.flush()
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning",
                    ssl_certfile=args.tls_cert, ssl_keyfile=args.tls_key,
                    ssl_ca_certs=args.tls_client_ca,
                    ssl_cert_reqs=ssl.CERT_REQUIRED if args.tls_client_ca else ssl.CERT_NONE,
                    timeout_graceful_shutdown=3)
    finally:
        if forwarder is not None:
            forwarder.stop()
        store.close()
        state.close()
    return 0
