"""Who may read a file, from its POSIX owner, group and mode bits.

Principals: `user:NAME` (or `uid:N` when the id has no name), `group:NAME` (or `gid:N`), and
`everyone` for world-readable files.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat

from retrieval.access import EVERYONE


def principals_from_stat(st: os.stat_result) -> frozenset[str]:
    mode = st.st_mode
    principals = set()
    if mode & stat.S_IRUSR:
        principals.add(_user(st.st_uid))
    if mode & stat.S_IRGRP:
        principals.add(_group(st.st_gid))
    if mode & stat.S_IROTH:
        principals.add(EVERYONE)
    return frozenset(principals)


def _user(uid: int) -> str:
    try:
        return f"user:{pwd.getpwuid(uid).pw_name}"
    except KeyError:
        return f"uid:{uid}"


def _group(gid: int) -> str:
    try:
        return f"group:{grp.getgrgid(gid).gr_name}"
    except KeyError:
        return f"gid:{gid}"
