"""The admin page: start an ingestion run of a configured share and watch it, the last runs'
reports, users, and the feedback export.

An admin adds, changes and removes other users; their own role, and (unless admins read
everything anyway) their own groups, only another admin changes: such an edit is refused and
audited as `user_change_refused`.
"""

from __future__ import annotations

import io
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import streamlit as st

from appliance.errors import InvalidUser, NotAllowed, UnknownDocument
from appliance.users import User
from ui import resources
from ui.incident import shown_as_incident
from ui.safe import literal_markdown
from ui.session import t

_RUNS_SHOWN = 10
# A run started elsewhere whose progress has not moved for this long is taken as ended.
_STALE_SECONDS = 900


def admin_page() -> None:
    user: User = st.session_state.user
    if not user.admin:
        st.stop()
    st.header(t("admin"))
    ingestion_panel(user)
    last_runs()
    users_panel(user)
    tokens_panel(user)
    erase_panel(user)
    st.download_button(
        t("export_feedback"), data=_feedback_golden(), file_name="feedback-golden.jsonl",
        mime="application/jsonl",
    )  # fmt: skip


def _progress_path() -> Path:
    return resources.settings().run_dir / "ui-ingest.progress.json"


def _log_path() -> Path:
    return resources.settings().run_dir / "ui-ingest.log"


def ingestion_panel(user: User) -> None:
    shares = resources.settings().ingest.shares
    st.subheader(t("start_ingestion"))
    if not shares:
        st.caption("RAG_INGEST__SHARES")
        return
    share = st.selectbox(t("share"), shares, key="ingest-share")
    running = _running()
    if st.button(t("start_ingestion"), disabled=running) and share:
        start_ingestion(user, share)
        st.rerun()
    ingestion_progress()


def start_ingestion(user: User, share: str) -> None:
    progress = _progress_path()
    progress.parent.mkdir(parents=True, exist_ok=True)
    progress.write_text(
        json.dumps({"state": "starting", "done": 0, "total": 0, "updated": time.time()})
    )
    st.session_state.ingest_process = resources.appliance().ingest_in_background(
        resources.actor(user), share, progress, _log_path()
    )


def _read_progress() -> dict[str, Any] | None:
    try:
        state = json.loads(_progress_path().read_text())
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None


def _running() -> bool:
    state = _read_progress()
    return state is not None and state.get("state") in ("starting", "running") and _alive()


def _alive() -> bool:
    process: subprocess.Popen[bytes] | None = st.session_state.get("ingest_process")
    if process is not None:
        return process.poll() is None
    # Started from another session: running while its progress file keeps being written.
    state = _read_progress() or {}
    return time.time() - float(state.get("updated", 0.0)) < _STALE_SECONDS


@st.fragment(run_every=1.0)
@shown_as_incident  # a fragment reruns alone, outside the page's own guard
def ingestion_progress() -> None:
    state = _read_progress()
    if state is None:
        return
    done, total = int(state.get("done", 0)), int(state.get("total", 0))
    if state.get("state") in ("starting", "running") and _alive():
        st.progress(done / total if total else 0.0, t("ingestion_running", done=done, total=total))
        return
    report = _last_report()
    if report is not None:
        st.success(
            t("ingestion_done", indexed=report["indexed"] + report["updated"],
              failed=len(report["failed"]))
        )  # fmt: skip


def _reports() -> list[Path]:
    folder = resources.settings().ingest_reports_dir
    return sorted(folder.glob("ingest-*.json"), reverse=True) if folder.exists() else []


def _read_reports(limit: int) -> list[dict[str, Any]]:
    """The newest run reports, newest first; an unreadable one is left out."""
    reports = []
    for path in _reports()[:limit]:
        try:
            reports.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue
    return reports


def _last_report() -> dict[str, Any] | None:
    newest = _read_reports(1)
    return newest[0] if newest else None


def last_runs() -> None:
    st.subheader(t("last_runs"))
    rows = []
    for report in _read_reports(_RUNS_SHOWN):
        rows.append({
            "finished": report.get("finished"),
            "roots": ", ".join(report.get("roots", [])),
            "files": report.get("files_seen"),
            "indexed": report.get("indexed"),
            "updated": report.get("updated"),
            "deleted": report.get("deleted"),
            "failed": len(report.get("failed", [])),
            "seconds": report.get("seconds"),
        })  # fmt: skip
    st.dataframe(rows, hide_index=True, width="stretch")


def users_panel(admin: User) -> None:
    st.subheader(t("users"))
    appliance, actor = resources.appliance(), resources.actor(admin)
    users = appliance.parts.users.list()
    st.dataframe(
        [{t("username"): u.name, t("groups"): ", ".join(u.groups), t("is_admin"): u.admin}
         for u in users],
        hide_index=True, width="stretch",
    )  # fmt: skip
    with st.form("add-user", clear_on_submit=True):
        st.caption(t("add_user"))
        name = st.text_input(t("username"), key="new-user-name")
        password = st.text_input(t("password"), type="password", key="new-user-password")
        groups = st.text_input(t("groups"), key="new-user-groups")
        is_admin = st.checkbox(t("is_admin"), key="new-user-admin")
        if st.form_submit_button(t("add_user")):
            try:
                appliance.add_user(actor, name.strip(), password, groups.split(","), is_admin)
            except NotAllowed:
                st.error(t("own_account_change_refused"))
                return
            except InvalidUser as exc:
                st.error(str(exc))
                return
            st.rerun()
    others = [u.name for u in users if u.name != admin.name]
    if others:
        with st.form("remove-user"):
            name = st.selectbox(t("username"), others, key="remove-user-name")
            if st.form_submit_button(t("remove_user")) and name:
                appliance.remove_user(actor, name)
                st.rerun()


def tokens_panel(admin: User) -> None:
    """The users' API tokens: create one (its secret shown once), list, revoke."""
    st.subheader(t("api_tokens"))
    appliance, actor = resources.appliance(), resources.actor(admin)
    created = st.session_state.pop("created_token", None)
    if created is not None:
        st.success(t("token_created", user=created["user"]))
        st.code(created["token"], language=None)
    tokens = appliance.tokens()
    st.dataframe([token.as_json() for token in tokens], hide_index=True, width="stretch")
    names = [u.name for u in appliance.parts.users.list()]
    if names:
        with st.form("create-token", clear_on_submit=True):
            user = st.selectbox(t("username"), names, key="token-user")
            label = st.text_input(t("token_label"), key="token-label")
            days = st.number_input(t("token_expires_days"), 0, 3650, 90, key="token-days")
            if st.form_submit_button(t("create_token")) and user:
                token, secret = appliance.create_token(actor, user, int(days) or None, label)
                st.session_state.created_token = {"user": token.user, "token": secret}
                st.rerun()
    live = [token.id for token in tokens if token.revoked is None]
    if live:
        with st.form("revoke-token"):
            token_id = st.selectbox("id", live, key="revoke-token-id")
            if st.form_submit_button(t("revoke_token")) and token_id:
                appliance.revoke_token(actor, token_id)
                st.rerun()


def erase_panel(admin: User) -> None:
    """Erasing a document (as `rag erase PATH` does) for an admin, who names the file (the
    library shows paths): the page never lists documents beyond what the admin may read."""
    st.subheader(t("erase_document"))
    with st.form("erase", clear_on_submit=True):
        path = st.text_input(t("erase_path"), key="erase-path")
        confirmed = st.checkbox(t("erase_confirm"), key="erase-confirm")
        submitted = st.form_submit_button(t("erase_document"))
    if not (submitted and confirmed and path.strip()):
        return
    try:
        erasure = resources.appliance().erase(resources.actor(admin), path=path.strip())
    except UnknownDocument as exc:
        st.error(literal_markdown(str(exc)))  # it names the file
        return
    result = erasure.as_json()
    st.success(t("erased", chunks=result["chunks_removed"], remaining=result["remaining"]))


def _feedback_golden() -> str:
    out = io.StringIO()
    resources.appliance().parts.feedback.export_golden(out)
    return out.getvalue()
