"""The appliance's one settings object.

Every value comes from an environment variable with the prefix ``RAG_`` and ``__`` for
nesting (``RAG_QDRANT__URL``, ``RAG_LLM__BASE_URL``), or from the default shown here. Each
field's description is the configuration reference; ``rag doctor`` and the README point here.
"""

from __future__ import annotations

import os
import stat
from ipaddress import IPv4Network, IPv6Network
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, IPvAnyNetwork, SecretStr, StringConstraints
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent

# Switches that keep every library off the network: model hubs, telemetry, usage statistics.
# They are forced, not defaulted: an appliance that may not phone home must not be talked
# out of it by a stray environment variable.
OFFLINE_ENVIRONMENT: dict[str, str] = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "DO_NOT_TRACK": "1",
    "SCARF_NO_ANALYTICS": "true",
    "UNSTRUCTURED_DISABLE_NOTICE": "1",
    "VLLM_NO_USAGE_STATS": "1",
    "VLLM_DO_NOT_TRACK": "1",
    # onnxruntime (under unstructured's parsers) tries to send usage events to Microsoft.
    "ORT_DISABLE_TELEMETRY": "1",
    "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false",
    "STREAMLIT_SERVER_HEADLESS": "true",
    # Not network, but noise: no download-style progress bars in logs and JSON output.
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TRANSFORMERS_VERBOSITY": "error",
    "TOKENIZERS_PARALLELISM": "false",
}


def enforce_offline() -> None:
    """Set the offline switches in this process (and so in every child it starts)."""
    os.environ.update(OFFLINE_ENVIRONMENT)


# Permission bits of group and others. Nothing the appliance keeps (password hashes,
# conversations, restricted passages in the index) may carry any of them.
OPEN_TO_OTHERS = 0o077


class SecretFileError(ValueError):
    """A password or secret file that cannot be used; the message says what to fix."""


def read_secret(path: Path | None, setting: str) -> str:
    """The secret in the file named by `setting` (its first line, without the newline):
    readable by its owner only. Raises SecretFileError saying what to fix."""
    if path is None:
        raise SecretFileError(f"{setting} is not set: point it at a file holding the secret")
    try:
        mode = path.stat().st_mode
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise SecretFileError(
            f"cannot read {path} ({why}): set {setting} to a file this account may read"
        ) from exc
    if mode & 0o077:
        raise SecretFileError(
            f"{path} ({setting}) may be read or written by others (mode {mode & 0o777:o}): "
            f"run `chmod 600 {path}`"
        )
    if not lines or not lines[0]:
        raise SecretFileError(f"{path} ({setting}) is empty: write the secret on its first line")
    return lines[0]


def protect_state(data_dir: Path | None = None) -> None:
    """Make everything this process (and every child it starts) creates its owner's alone:
    umask 077, so files are 0600 and folders 0700. Every entry point calls it before it
    creates anything.

    With `data_dir`: a data folder that an older version left open to group or others is
    closed (its own mode only, which keeps other accounts out of everything under it; `rag
    doctor` names looser files inside). A folder owned by another account, or one that cannot
    be changed, is left as it is."""
    os.umask(OPEN_TO_OTHERS)
    if data_dir is None:
        return
    try:
        found = data_dir.stat()
        if (
            stat.S_ISDIR(found.st_mode)
            and found.st_mode & OPEN_TO_OTHERS
            and found.st_uid == os.geteuid()
        ):
            data_dir.chmod(stat.S_IMODE(found.st_mode) & ~OPEN_TO_OTHERS)
    except OSError:
        pass  # missing (the first command creates it 0700) or on a read-only mount


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class QdrantSettings(_Section):
    url: str | None = Field(
        default=None,
        description="URL of a Qdrant server (the appliance's `qdrant` service). Unset: the "
        "embedded Qdrant engine stores the index under the data directory.",
    )
    api_key: SecretStr | None = Field(
        default=None, description="API key for the Qdrant server; ignored by the embedded engine."
    )
    collection: str = Field(default="documents", description="Name of the chunk collection.")


class EmbedderSettings(_Section):
    model_dir: Path | None = Field(
        default=None,
        description="Local folder of the sentence-transformers embedding model; prompts in "
        "its `config_sentence_transformers.json` (`query`, `document`) are added to what it "
        "embeds. Unset: `<models_dir>/embedder`, which `make setup` converts from the packaged "
        "multilingual-e5-small (about 100 languages; a question in one language finds "
        "passages in another); it also copies the English-only all-MiniLM-L6-v2 into "
        "`<models_dir>/all-minilm-l6-v2`. An index built with another model is refused until "
        "`rag ingest --rebuild`.",
    )
    batch_size: int = Field(default=64, ge=1, description="Texts embedded per model call.")
    precision: Literal["auto", "float32", "bfloat16"] = Field(
        default="auto",
        description="Arithmetic of the embedding model on the CPU. `auto`: bfloat16 where the "
        "CPU computes it natively (AVX512-BF16 or AMX; about three times faster, vectors "
        "within 0.0001 cosine of float32), float32 elsewhere.",
    )


class LLMSettings(_Section):
    base_url: str | None = Field(
        default=None,
        description="Base URL of an OpenAI-compatible server, ending in /v1 (the appliance's "
        "`vllm` service). Unset: the local vLLM server that `rag up` starts on `port`.",
    )
    model: str = Field(
        default="local-instruct", description="Model name the server serves and is asked for."
    )
    api_key: SecretStr | None = Field(default=None, description="Bearer token for the server.")
    timeout_seconds: float = Field(default=120.0, gt=0, description="Per-request timeout.")
    max_tokens: int = Field(default=256, ge=1, description="Longest answer, in tokens.")
    temperature: float = Field(default=0.0, ge=0, description="Sampling temperature.")
    model_dir: Path | None = Field(
        default=None,
        description="Local model folder the local server loads. Unset: `<models_dir>/llm`, "
        "converted by `make setup` from the packaged SmolLM2-135M-Instruct.",
    )
    server_python: Path = Field(
        default=PROJECT_ROOT / ".venv-llm" / "bin" / "python",
        description="Python of the separate environment that holds vLLM (CPU build here).",
    )
    host: str = Field(default="127.0.0.1", description="Address the local LLM server binds.")
    port: int = Field(default=8010, description="Port of the local LLM server.")
    max_model_len: int = Field(default=4096, description="Context length the server allows.")
    kv_cache_gib: int = Field(default=2, ge=1, description="KV cache of the CPU build, in GiB.")
    startup_timeout_seconds: float = Field(
        default=600.0, description="How long `rag up` waits for the LLM server to be healthy."
    )

    def resolved_base_url(self) -> str:
        return self.base_url or f"http://{self.host}:{self.port}/v1"


class OcrSettings(_Section):
    languages: str = Field(
        default="eng+fra+deu",
        description="Tesseract languages, joined with '+'; each needs its traineddata installed.",
    )
    dpi: int = Field(default=300, ge=72, description="Resolution PDF pages are rendered at.")
    min_text_chars: int = Field(
        default=20,
        ge=0,
        description="A PDF page whose text layer has fewer letters or digits is OCR'd instead.",
    )
    max_megapixels: int = Field(
        default=200,
        ge=1,
        description="Largest image OCR'd, in millions of pixels (A0 at 300 dpi is about 140). "
        "A larger image fails with that reason (decompression bombs end here); a larger PDF "
        "page is rendered at a lower resolution that fits.",
    )


class IngestSettings(_Section):
    workers: int | None = Field(
        default=None, ge=1, description="Parser processes. Unset: one per core."
    )
    file_timeout_seconds: float = Field(
        default=600.0,
        gt=0,
        description="A file whose parsing and OCR take longer fails with that reason.",
    )
    worker_memory_mb: int = Field(
        default=2048,
        ge=256,
        description="A parser process (with its OCR children) holding more memory is stopped "
        "and its file fails: decompression bombs end here.",
    )
    batch_chunks: int = Field(
        default=256,
        ge=1,
        description="Chunks embedded in one model call and written to the index in one "
        "transaction, across files. A batch is also written when it is 10 s old.",
    )
    shares: list[str] = Field(
        default_factory=list,
        description="The file shares an admin can start an ingestion run of from the UI, as a "
        "JSON list of mounted folders and `smb://server/share/path` URLs: "
        '`RAG_INGEST__SHARES=\'["/mnt/share", "smb://fs1/docs"]\'`.',
    )


class ChunkingSettings(_Section):
    max_chars: int = Field(default=1200, ge=200, description="Longest chunk, in characters.")


class RetrievalSettings(_Section):
    top_k: int = Field(default=5, ge=1, description="Hits returned by `rag search`.")
    context_passages: int = Field(
        default=3, ge=1, description="Passages given to the model to answer from."
    )
    score_margin: float = Field(
        default=0.2,
        ge=0,
        description="Passages scoring more than this below the best one are not given to the "
        "model: a small model answers from the wrong passage when weak ones crowd the prompt.",
    )
    min_score: float = Field(
        default=0.8,
        description="Relevance (cosine similarity, or the share of the question's keywords a "
        "passage holds when that is higher) below which a passage is not relevant; when no "
        "hit reaches it, `rag ask` refuses without calling the model. It depends on the "
        "embedding model: multilingual-e5 gives unrelated text about 0.7 to 0.8 (the default "
        "is set below the lowest relevance of an answerable question in the evaluation sets' "
        "dev splits, 0.836), MiniLM about 0 to 0.3 (use 0.3 with it).",
    )
    min_support: float = Field(
        default=1.5,
        description="How well the best passage sentence must support an answer (cosine of "
        "question and sentence, plus twice the rarity-weighted share of the question's "
        "keywords in its passage; 0 to 3) for the model to be asked; below it, `rag ask` "
        "refuses. Chosen on the evaluation sets' dev splits with multilingual-e5; `rag eval` "
        "on your own golden file prints the value to use.",
    )
    query_languages: str = Field(
        default="en,fr,de",
        description="Languages (ISO 639-1, comma-separated) whose stemming and stopwords "
        "keyword search applies to a query; a passage is indexed in its own language.",
    )
    reranker_dir: Path | None = Field(
        default=None,
        description="Local folder of a sentence-transformers cross-encoder that reorders the "
        "fused candidates (the bundle carries a multilingual one). Unset: no reranking.",
    )
    late_interaction: bool = Field(
        default=False,
        description="Without a cross-encoder (`reranker_dir` unset), take a second look at "
        "the fused candidates by late interaction: each question word's closest word in the "
        "passage, compared with the embedding model's own word vectors. It finds the passage "
        "that answers better, in another language too, but re-reads every candidate for every "
        "question (seconds on two cores), so it is off by default. A configured "
        "cross-encoder takes precedence.",
    )
    quote_unverified_answers: bool = Field(
        default=True,
        description="When the model's answer does not stand on the passages it cites (its "
        "figures are not there, or it cites nothing), answer with the passage sentence that "
        "best matches the question, quoted and cited; off: refuse instead. Small models need "
        "it; the production model rarely triggers it.",
    )
    answer_check: Literal["wording", "facts"] = Field(
        default="wording",
        description="How closely a model's answer must stand on the passages it cites to be "
        "kept. `wording`: it cites the best-supporting passage, most of its words are the "
        "passages' and its figures and codes are theirs (a small model copies; when it "
        "paraphrases it is often wrong). `facts`: it cites passages it was given and its "
        "figures and codes are theirs; its words are free, so a paraphrase or an answer in "
        "another language than the passage is kept (a strong model; the production setting).",
    )
    rerank_candidates: int = Field(
        default=30, ge=1, description="Fused candidates the reranker reads per query."
    )
    max_question_chars: int = Field(
        default=2000,
        ge=1,
        description="Longest question or search, in characters. A longer one is refused "
        "before the index is searched (`rag ask` and `rag search` exit 2, the chat page says "
        "so): each of a question's words costs lookups in the index.",
    )


class IndexSettings(_Section):
    linger_seconds: float = Field(
        default=2.0,
        ge=0,
        description="How long a process keeps the embedded index open after its last "
        "operation, so searches in a row don't reopen it; another process that needs the "
        "index takes it over at once. Ignored with a Qdrant server.",
    )


# Where a reverse proxy on the same host connects from.
_LOOPBACK: list[IPv4Network | IPv6Network] = [IPv4Network("127.0.0.1/32"), IPv6Network("::1/128")]


class UISettings(_Section):
    host: str = Field(default="127.0.0.1", description="Address the Streamlit UI binds.")
    port: int = Field(default=8501, description="Port of the Streamlit UI.")
    startup_timeout_seconds: float = Field(default=120.0, description="Wait for UI health.")
    session_minutes: int = Field(
        default=480, ge=1, description="A signed-in session ends after this many minutes."
    )
    max_failed_sign_ins: int = Field(
        default=5,
        ge=1,
        description="Failed sign-ins from one client address (whatever the usernames) within "
        "the lockout window before that address is refused until the window has passed. A "
        "username gets twice as many failures (from any address) before each further attempt "
        "for it has to wait: one minute, doubling with each further failure, at most the window.",
    )
    sign_in_lockout_minutes: int = Field(
        default=15,
        ge=1,
        description="The window failed sign-ins are counted in, and the longest a client "
        "address or a username is made to wait.",
    )
    trusted_proxies: list[IPvAnyNetwork] = Field(
        default_factory=lambda: _LOOPBACK.copy(),
        description="Addresses or networks of the reverse proxies in front of the UI, as a JSON "
        "list: a connection from one of them counts as coming from the client its "
        "X-Forwarded-For header names, e.g. `RAG_UI__TRUSTED_PROXIES='[\"172.18.0.1\"]'` for "
        "the proxy as the `ui` container sees it; by default this host's loopback (a proxy "
        "on the host of `rag up`). A connection from any other address counts as coming from "
        "that address: behind a proxy not listed here, all users share the proxy's address "
        "for sign-in throttling.",
    )
    language: Literal["auto", "en", "fr", "de"] = Field(
        default="auto",
        description="Language of the UI text; `auto` follows the browser's language.",
    )


class ApiSettings(_Section):
    host: str = Field(default="127.0.0.1", description="Address `rag serve` binds.")
    port: int = Field(default=8600, ge=1, le=65535, description="Port of `rag serve`.")
    startup_timeout_seconds: float = Field(
        default=120.0, gt=0, description="How long `rag up` waits for the API to be healthy."
    )
    max_request_bytes: int = Field(
        default=1_000_000,
        ge=1024,
        description="Largest request body the API reads; a larger one is refused with 413.",
    )
    requests_per_minute: int = Field(
        default=120,
        ge=1,
        description="Requests one API token may make per minute; above it the API answers 429 "
        "with `Retry-After`.",
    )
    cors_origins: list[str] = Field(
        default_factory=list,
        description="Browser origins allowed to call the API from their pages, as a JSON list "
        '(e.g. `["https://chat.example.internal"]`); empty: no cross-origin calls.',
    )


class AuditSettings(_Section):
    retention_days: int = Field(
        default=365,
        ge=1,
        description="Audit events older than this are dropped when the log is next written "
        "(the hash chain restarts from a recorded checkpoint).",
    )
    key_file: Path | None = Field(
        default=None,
        description="A file holding a secret key (at least 32 random bytes, mode 0600) kept "
        "outside RAG_DATA_DIR, e.g. on the host's configuration volume. With it, the audit "
        "log's head and events carry an HMAC-SHA256, so that whoever can write the data folder "
        "but not read this file can neither shorten the log nor forge a retention checkpoint "
        "unnoticed. After setting or changing it, run `rag audit --seal` once.",
    )


class BackupSettings(_Section):
    key_file: Path | None = Field(
        default=None,
        description="A file holding a secret (at least 16 bytes, e.g. `head -c 32 /dev/urandom "
        "> /etc/rag/backup.key`, mode 0400, owned by the account that runs `rag`) on neither "
        "the data volume nor the backup storage. Set: `rag backup` signs each backup's "
        "manifest with it (HMAC-SHA256, in `manifest.sig`) and `rag restore` refuses a backup "
        "whose signature is missing or wrong, so whoever can write to the backups cannot add "
        "a user or change a file and recompute the checksums. Keep a copy with the recovery "
        "documents: a backup restores only with the key it was signed with. Unset: manifests "
        "are unsigned, and a restore says so.",
    )


class AccessSettings(_Section):
    group_map: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Directory groups that also hold share groups, as a JSON object: a user in "
        "a key's group also holds `group:G` for each share group G listed, e.g. "
        '`RAG_ACCESS__GROUP_MAP=\'{"finance-team": ["finance", "fin-ro"]}\'`.',
    )
    admins_read_everything: bool = Field(
        default=False,
        description="Whether admins search, ask and browse every document. Off: an admin reads "
        "what their own principals allow, like anyone else (admin rights are for users, "
        "ingestion, erasure and the audit log).",
    )
    sid_map: dict[
        Annotated[str, StringConstraints(pattern=r"^S-1-(\d+|0x[0-9A-Fa-f]{12})(-\d+)*$")],
        Annotated[str, StringConstraints(pattern=r"^(everyone|(user|group):\S.*)$")],
    ] = Field(
        default_factory=dict,
        description="Windows SIDs found in the NTFS ACLs of SMB shares, and the principal each "
        "one stands for (`user:NAME`, `group:NAME` or `everyone`), as a JSON object; consulted "
        'before winbind, e.g. `RAG_ACCESS__SID_MAP=\'{"S-1-5-21-1-2-3-1104": '
        '"group:finance", "S-1-5-21-1-2-3-513": "everyone"}\'`. A SID neither mapped nor '
        "known to winbind becomes `sid:S-...`, which no user holds.",
    )


class LdapSettings(_Section):
    url: str = Field(
        default="",
        description="The directory server: `ldaps://dc1.corp.example:636`, or "
        "`ldap://dc1.corp.example:389` upgraded with StartTLS (the password never crosses "
        "unencrypted). Several servers, tried in order: separated by spaces.",
    )
    ca_file: Path | None = Field(
        default=None,
        description="PEM file of the CA that signed the directory servers' certificates (the "
        "organisation's own); unset: the system's CAs.",
    )
    base_dn: str = Field(
        default="", description="Where users and groups are searched, e.g. `DC=corp,DC=example`."
    )
    bind_dn: str = Field(
        default="",
        description="The service account that looks users and groups up, e.g. "
        "`CN=svc-rag,OU=Service Accounts,DC=corp,DC=example` (read access is enough).",
    )
    bind_password_file: Path | None = Field(
        default=None,
        description="A file (mode 0600 or 0400) holding the service account's password.",
    )
    user_attribute: str = Field(
        default="sAMAccountName",
        description="The attribute a sign-in name is matched against: `sAMAccountName` or "
        "`userPrincipalName` on Active Directory, `uid` elsewhere.",
    )
    admin_groups: list[str] = Field(
        default_factory=list,
        description="Directory groups (names, as in `group:NAME`) whose members are the "
        'appliance\'s admins, as a JSON list, e.g. `["rag-admins"]`.',
    )
    timeout_seconds: float = Field(
        default=5.0,
        gt=0,
        description="How long a connection or a search may take before the directory counts "
        "as down (sign-in then fails closed; local break-glass admins still sign in).",
    )
    refresh_seconds: float = Field(
        default=300.0,
        ge=0,
        description="How long an open session or an API token goes on the groups read last: "
        "after this, the next request reads the user from the directory again, so a group "
        "change takes effect at the next sign-in and at most this long after for open "
        "sessions and tokens.",
    )


class OidcSettings(_Section):
    issuer: str = Field(
        default="",
        description="The OpenID provider's issuer URL on the internal network (Keycloak, ADFS, "
        "Entra ID through a gateway), e.g. `https://sso.corp.example/realms/corp`; its "
        "discovery document and signing keys are fetched from there, and from nowhere else.",
    )
    client_id: str = Field(default="", description="The appliance's client id at the provider.")
    client_secret_file: Path | None = Field(
        default=None, description="A file (mode 0600 or 0400) holding the client secret."
    )
    ca_file: Path | None = Field(
        default=None,
        description="PEM file of the CA that signed the provider's certificate; unset: the "
        "system's CAs.",
    )
    redirect_url: str = Field(
        default="",
        description="The UI's address as users reach it (registered at the provider as the "
        "redirect URI), e.g. `https://rag.corp.example/`.",
    )
    groups_claim: str = Field(
        default="groups",
        description="The ID and access token claim that lists the user's groups; a token "
        "without it gives only what is readable by everyone.",
    )
    username_claim: str = Field(
        default="preferred_username",
        description="The claim that names the user (`preferred_username`, `upn`, `email`).",
    )
    audience: str = Field(
        default="",
        description="The audience API access tokens must carry; empty: the client id.",
    )
    admin_groups: list[str] = Field(
        default_factory=list,
        description="Groups (as the groups claim lists them) whose members are admins, as a "
        "JSON list.",
    )


class IdentitySettings(_Section):
    provider: Literal["local", "ldap", "oidc"] = Field(
        default="local",
        description="Who signs users in: `local` (the appliance's own users, `rag users`), "
        "`ldap` (the organisation's LDAP or Active Directory: name and password, groups from "
        "the directory) or `oidc` (the organisation's single sign-on). With `ldap` or `oidc`, "
        "local admins remain break-glass accounts: they sign in with their local password, "
        "and each such sign-in is audited as `login` with `break_glass`.",
    )
    ldap: LdapSettings = Field(default_factory=LdapSettings)
    oidc: OidcSettings = Field(default_factory=OidcSettings)


class SmbSettings(_Section):
    username: str = Field(
        default="",
        description="The account `rag ingest smb://server/share/path` reads shares as (read "
        "access to the files and their permissions is enough).",
    )
    domain: str = Field(default="", description="The account's domain, e.g. `CORP`.")
    password_file: Path | None = Field(
        default=None, description="A file (mode 0600 or 0400) holding the account's password."
    )
    timeout_seconds: float = Field(
        default=30.0,
        gt=0,
        description="How long a connection or a request to the file server may take; a share "
        "that drops fails only the files in flight, and the next run completes them.",
    )


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="RAG_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    data_dir: Path = Field(
        default=Path("data"),
        description="Where all state lives: index, ledger, users, runs. Kept 0700 with files "
        "0600: only the account that runs the appliance reads it (`rag doctor` checks).",
    )
    models_dir: Path = Field(
        default=PROJECT_ROOT / "models",
        description="Folder of the local model folders (`embedder`, `llm`).",
    )
    qdrant: QdrantSettings = Field(default_factory=QdrantSettings)
    embedder: EmbedderSettings = Field(default_factory=EmbedderSettings)
    llm: LLMSettings = Field(default_factory=LLMSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    ocr: OcrSettings = Field(default_factory=OcrSettings)
    chunking: ChunkingSettings = Field(default_factory=ChunkingSettings)
    retrieval: RetrievalSettings = Field(default_factory=RetrievalSettings)
    index: IndexSettings = Field(default_factory=IndexSettings)
    ui: UISettings = Field(default_factory=UISettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    audit: AuditSettings = Field(default_factory=AuditSettings)
    backup: BackupSettings = Field(default_factory=BackupSettings)
    access: AccessSettings = Field(default_factory=AccessSettings)
    identity: IdentitySettings = Field(default_factory=IdentitySettings)
    smb: SmbSettings = Field(default_factory=SmbSettings)

    @property
    def embedder_dir(self) -> Path:
        return self.embedder.model_dir or self.models_dir / "embedder"

    @property
    def llm_model_dir(self) -> Path:
        return self.llm.model_dir or self.models_dir / "llm"

    @property
    def index_dir(self) -> Path:
        return self.data_dir / "index"

    @property
    def ledger_path(self) -> Path:
        return self.data_dir / "ledger.sqlite3"

    @property
    def ingest_reports_dir(self) -> Path:
        return self.data_dir / "ingest-reports"

    @property
    def users_path(self) -> Path:
        return self.data_dir / "users.sqlite3"

    @property
    def tokens_path(self) -> Path:
        return self.data_dir / "tokens.sqlite3"

    @property
    def history_path(self) -> Path:
        return self.data_dir / "history.sqlite3"

    @property
    def feedback_path(self) -> Path:
        return self.data_dir / "feedback.sqlite3"

    @property
    def audit_path(self) -> Path:
        return self.data_dir / "audit.jsonl"

    @property
    def page_images_dir(self) -> Path:
        return self.data_dir / "page-images"

    @property
    def run_dir(self) -> Path:
        return self.data_dir / "run"
