"""`rag users` and `rag tokens`: who may use the appliance, and the API tokens that act for
them."""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any

from appliance.actor import Actor
from ops.cli.base import Result, UsageError, add_command, add_group, appliance
from settings import Settings


def add_user(args: argparse.Namespace, settings: Settings) -> Result:
    if sys.stdin.isatty():
        password = getpass.getpass(f"Password for {args.name}: ")
    else:
        password = sys.stdin.readline().rstrip("\n")
    groups = (args.groups or "").split(",")
    user = appliance(settings).add_user(Actor.operator(), args.name, password, groups, args.admin)
    return user.as_json()


def list_users(args: argparse.Namespace, settings: Settings) -> Result:
    return {"users": [user.as_json() for user in appliance(settings).parts.users.list()]}


def remove_user(args: argparse.Namespace, settings: Settings) -> Result:
    appliance(settings).remove_user(Actor.operator(), args.name)
    return {"removed": args.name}


def create_token(args: argparse.Namespace, settings: Settings) -> Result:
    if args.expires_days is not None and args.expires_days < 1:
        raise UsageError("--expires-days must be at least 1 (leave it out: no expiry)")
    token, secret = appliance(settings).create_token(
        Actor.operator(), args.user, args.expires_days, args.name
    )
    return {"user": token.user, "token": secret, "id": token.id,
            "expires": token.as_json()["expires"]}  # fmt: skip


def list_tokens(args: argparse.Namespace, settings: Settings) -> Result:
    return {"tokens": [token.as_json() for token in appliance(settings).tokens(args.user)]}


def revoke_token(args: argparse.Namespace, settings: Settings) -> Result:
    return appliance(settings).revoke_token(Actor.operator(), args.id).as_json()


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    users = add_group(commands, "users", "manage the appliance's users")
    p = add_command(users, "add", common, "add or update a user (password on stdin)", add_user)
    p.add_argument("name")
    p.add_argument("--groups", default="", help="comma-separated groups")
    p.add_argument("--admin", action="store_true")
    add_command(users, "list", common, "list users", list_users)
    p = add_command(users, "remove", common, "remove a user and their API tokens", remove_user)
    p.add_argument("name", metavar="NAME")

    tokens = add_group(commands, "tokens", "the users' API tokens")
    p = add_command(tokens, "create", common, "a new API token for USER, shown once",
                    create_token)  # fmt: skip
    p.add_argument("user", metavar="USER")
    p.add_argument("--expires-days", type=int, default=None, metavar="N",
                   help="the token stops working after N days (default: never)")  # fmt: skip
    p.add_argument("--name", default="", metavar="LABEL", help="what the token is for")
    p = add_command(tokens, "list", common, "the tokens, without secrets", list_tokens)
    p.add_argument("--user", default=None, metavar="U", help="only this user's")
    p = add_command(tokens, "revoke", common, "stop a token working", revoke_token)
    p.add_argument("id", metavar="ID")
