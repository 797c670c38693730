"""python -m clonetrain.studio [--config studio.yaml] [--host 127.0.0.1] [--port 8600]
python -m clonetrain.studio add-user NAME --roles upload,approve,render [--config studio.yaml]   (asks the password)
python -m clonetrain.studio hash-password                                                       (prints a hash)
"""

from __future__ import annotations

import argparse
import getpass
import logging
import sys

from clonetrain.core.errors import ClonetrainError
from clonetrain.studio import auth, settings as settings_mod

log = logging.getLogger("clonetrain.studio")


def _password(prompt_twice: bool = True) -> str:
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\n")  # piped in (scripts, tests)
    first = getpass.getpass("password: ")
    if prompt_twice and getpass.getpass("again: ") != first:
        raise ClonetrainError("the two passwords differ", "run the command again")
    return first


def serve(args) -> int:
    import uvicorn

    from clonetrain.studio.app import create_app

    s = settings_mod.load(args.config)
    host, port = args.host or s.host, args.port or s.port
    if host not in settings_mod.LOCALHOST:
        log.warning("the studio listens on %s: other machines can reach it. Put it behind HTTPS (a reverse proxy) "
                    "before anyone signs in from another machine.", host)
    if not s.users:
        log.warning("no users in %s: add one with python -m clonetrain.studio add-user NAME --roles admin --config %s",
                    args.config, args.config or "studio.yaml")
    log.info("clonetrain studio on http://%s:%d/ (data root %s)", host, port, s.root)
    uvicorn.run(create_app(s), host=host, port=port, log_level="warning", access_log=False)
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
    ap = argparse.ArgumentParser(prog="python -m clonetrain.studio", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=None, help="the studio's settings file (YAML; see clonetrain/studio/settings.py)")
    ap.add_argument("--host", default=None, help="default: the settings' host, 127.0.0.1 (this machine only)")
    ap.add_argument("--port", type=int, default=None)
    sub = ap.add_subparsers(dest="cmd")
    add = sub.add_parser("add-user", help="add a user (or set a user's roles and password) in the settings file")
    add.add_argument("name")
    add.add_argument("--roles", required=True, help=f"comma separated: {', '.join(settings_mod.ROLES)}")
    add.add_argument("--config", default=argparse.SUPPRESS, help="the settings file to write the user into")
    sub.add_parser("hash-password", help="print a password hash for the settings file")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "add-user":
            if not args.config:
                raise ClonetrainError("add-user needs --config: the settings file to write the user into")
            roles = [r.strip() for r in args.roles.split(",") if r.strip()]
            settings_mod.add_user(args.config, args.name, roles, auth.hash_password(_password()))
            print(f"user {args.name} ({', '.join(roles)}) written to {args.config}")
            return 0
        if args.cmd == "hash-password":
            print(auth.hash_password(_password()))
            return 0
        return serve(args)
    except (ClonetrainError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
