"""What a document is, said in every one of its passages.

A passage often never names what it belongs to ("This Regulation shall apply from ..."),
while the document or its folder does: a title, a first heading, a name defined with its
abbreviation. Ingestion gathers that into a short *document context* that is embedded and
keyword-indexed with every chunk of the file (`Chunk.context`), never shown or cited.

What is learned, from the document itself (`profile`):
- its titles: the title in its metadata and its first heading;
- the names it defines, each a (short, long) pair, in English, French and German forms:
  an abbreviation after its full name, "Digital Operational Resilience Act (DORA)",
  "Datenschutz-Grundverordnung (DSGVO)" (the abbreviation's letters must run through the
  name in order, from its first letter); a name given with "hereinafter", "ci-après",
  "im Folgenden" or "nachstehend" ('... financial sector (hereinafter "DORA")'); and a
  definition of an abbreviation or of a self-reference ('"the Regulation" means Regulation
  (EU) 2016/679', « le Règlement » désigne ..., „die Verordnung“ bezeichnet ...).

A document's context is its titles, its names, then the names defined by the other indexed
files of its series, at most CONTEXT_MAX_CHARS characters. A series is the files of one
folder whose names differ only in their numbers (`article-01.html`, `article-64.html`): the
parts of one work, such as an act split into one file per article that names itself once.
Files of a folder that are not numbered parts of one series (a folder of manual pages, of
policies) are separate documents and share nothing. The folder's path is already in every passage's
embedded text (`Chunk.location`).

Where it is kept, and how it stays true:
- The ledger row of each file holds its profile (`profile`, JSON) and the context its
  chunks were embedded with (`context`). Both are replaced with the row on every change and
  blanked by erasure with the row's other content fields; a row without a profile (indexed
  before document contexts existed) is parsed again by the next run.
- After a run, and after an erasure, `refresh_folders` recomputes the context of every
  indexed file in each folder where a file was added, changed, moved or removed; a file
  whose context differs is re-embedded from its stored chunks (no parsing): a name defined
  only by an erased or deleted file leaves its folder's other passages too.
- Query expansion (`ingest.catalog.Catalog.names_in`) reads the names from the ledger's
  profiles of the indexed files the user may read: an abbreviation in a question gets its
  full name, a full name its abbreviation. The ledger being the source of truth, an erased
  or deleted file's names are gone from expansion the moment its row is.
"""

from __future__ import annotations

import json
import posixpath
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import PurePath

from ingest.catalog import is_abbreviation
from ingest.document import ParsedDocument
from ingest.ledger import Ledger
from retrieval.models import Chunk
from retrieval.store import DocumentVersion, VectorStore

CONTEXT_MAX_CHARS = 200
# Names kept per document, and how much of a document is read for them.
MAX_NAMES = 6
_MINED_CHARS = 60_000
_MAX_LONG_WORDS = 12

_QUOTES = "\"'“”«»„‘’‹›"
_QUOTE = f"[{_QUOTES}]"
_UNQUOTED = f"[^{_QUOTES}"
# Full name then "(ABBR)": up to 12 words before an abbreviation of 2-12 letters/digits.
_ABBREVIATION = re.compile(
    r"(?P<long>[^\W\d_][\w'’\-]*(?:[ \t]+[\w'’\-]+){0,11})\s*\(\s*" + _QUOTE + r"?\s*"
    r"(?P<short>[^\W\d_][\w\-]{1,11})\s*" + _QUOTE + r"?\s*\)"
)
_HEREINAFTER = re.compile(
    r"\(\s*(?:hereinafter|hereafter|ci-après|ci-dessous|im\s+Folgenden|nachstehend|nachfolgend)"
    + _UNQUOTED
    + r"()]{0,40}"
    + _QUOTE
    + r"\s*(?P<short>"
    + _UNQUOTED
    + r"()]{2,60}?)\s*"
    + _QUOTE,
    re.IGNORECASE,
)
_DEFINITION = re.compile(
    _QUOTE
    + r"\s*(?P<short>"
    + _UNQUOTED
    + r"\n]{2,40}?)\s*"
    + _QUOTE
    + r"\s*,?\s*(?:means|shall\s+mean|refers\s+to|désigne|signifie|s'entend|bezeichnet|"
    r"bedeutet)\s+(?P<long>[^.;:\n]{3,200})",
    re.IGNORECASE,
)
# "the Regulation", "cette Directive", "der Vertrag": an article, then a capitalised noun.
_SELF_REFERENCE = re.compile(
    r"^(?i:the|this|that|le|la|les|l'|l’|ce|cette|der|die|das|dieser|diese|dieses)\s*"
    r"[A-ZÀ-ÖØ-Þ][\w\-]+$"
)
_SENTENCE_START = re.compile(r"[.;:!?\n(]\s*")
_WORD = re.compile(r"[\w'’\-]+")
_NUMBER = re.compile(r"\d+")


@dataclass(frozen=True)
class Profile:
    """What a document says it is: its titles and the names it defines."""

    titles: tuple[str, ...] = ()
    names: tuple[tuple[str, str], ...] = ()  # (short, long), most used first

    def to_json(self) -> str:
        return json.dumps({"titles": list(self.titles), "names": [list(n) for n in self.names]},
                          ensure_ascii=False)  # fmt: skip

    @classmethod
    def from_json(cls, text: str | None) -> Profile:
        if not text:
            return cls()
        data = json.loads(text)
        return cls(
            tuple(str(t) for t in data.get("titles", [])),
            tuple((str(s), str(long)) for s, long in data.get("names", [])),
        )


def profile(document: ParsedDocument, shown_title: str) -> Profile:
    """The document's titles other than `shown_title` (every passage carries that one
    already) and the names defined in it, its attachments included."""
    first_heading = next((b.text for b in document.blocks if b.kind == "heading"), "")
    titles = [t for t in (document.metadata_title, first_heading) if t]
    titles = [t for t in _unique(titles) if _casefold(t) != _casefold(shown_title)]
    text = "\n".join(_texts(document))[:_MINED_CHARS]
    return Profile(tuple(titles), tuple(defined_names(text)[:MAX_NAMES]))


def _texts(document: ParsedDocument) -> Iterable[str]:
    for block in document.blocks:
        yield block.text
    for attachment in document.attachments:
        yield from _texts(attachment.document)


def defined_names(text: str) -> list[tuple[str, str]]:
    """(short, long) names defined in the text, the most used short forms first."""
    found: dict[tuple[str, str], None] = {}
    for match in _ABBREVIATION.finditer(text):
        short = match.group("short")
        if is_abbreviation(short):
            long = _expansion(short, match.group("long"))
            if long:
                found[(short, long)] = None
    for match in _HEREINAFTER.finditer(text):
        short = _clean(match.group("short"))
        long = _preceding_phrase(text, match.start())
        if short and long and _casefold(short) not in _casefold(long):
            found[(short, long)] = None
    for match in _DEFINITION.finditer(text):
        short = _clean(match.group("short"))
        if is_abbreviation(short) or _SELF_REFERENCE.match(short):
            long = " ".join(_WORD.findall(match.group("long"))[:_MAX_LONG_WORDS])
            if long and _casefold(short) != _casefold(long):
                found[(short, long)] = None
    uses = Counter({name: len(re.findall(re.escape(name[0]), text)) for name in found})
    return [name for name, _ in uses.most_common()]


def _expansion(short: str, words_before: str) -> str:
    """The shortest run of the last words before the abbreviation that starts with its first
    letter and holds all its letters in order: "Digital Operational Resilience Act"."""
    letters = [c for c in _casefold(short) if c.isalnum()]
    words = words_before.split()
    for start in range(len(words) - 1, -1, -1):
        candidate = words[start:]
        joined = _casefold("".join(candidate))
        if joined[:1] != letters[0]:
            continue
        if _subsequence(letters, joined) and len(" ".join(candidate)) > len(short) + 2:
            if len(candidate) > len(letters) + 4:
                return ""
            return " ".join(candidate).strip(",;:")
    return ""


def _subsequence(letters: Sequence[str], text: str) -> bool:
    position = 0
    for letter in letters:
        position = text.find(letter, position) + 1
        if position == 0:
            return False
    return True


def _preceding_phrase(text: str, end: int) -> str:
    """The words of the sentence before `end`, at most _MAX_LONG_WORDS of them."""
    before = text[max(0, end - 400) : end]
    starts = list(_SENTENCE_START.finditer(before))
    clause = before[starts[-1].end() :] if starts else before
    return " ".join(_WORD.findall(clause)[-_MAX_LONG_WORDS:])


def _clean(text: str) -> str:
    return " ".join(text.split()).strip(",;:")


def _casefold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def _unique(items: Iterable[str]) -> tuple[str, ...]:
    seen: dict[str, str] = {}
    for item in items:
        seen.setdefault(_casefold(item), item)
    return tuple(seen.values())


def series_of(path: str) -> str:
    """The series a file belongs to: its folder and its name without its numbers."""
    location = PurePath(path)
    return str(location.parent / _NUMBER.sub("#", location.name.casefold()))


def series_names(profiles: Mapping[str, Profile]) -> dict[str, Counter[tuple[str, str]]]:
    """For each series of these files (path: profile), how many of its files define each
    name; a file alone in its series shares nothing."""
    members: dict[str, list[Profile]] = {}
    for path, found in profiles.items():
        members.setdefault(series_of(path), []).append(found)
    return {
        series: Counter(name for other in group for name in dict.fromkeys(other.names))
        for series, group in members.items()
        if len(group) > 1
    }


def context_of(own: Profile, folder: Counter[tuple[str, str]] | None = None) -> str:
    """The document context: its titles, its names, then the names the other files of its
    series define (`series_names`), the most shared first; at most CONTEXT_MAX_CHARS long."""
    parts = list(own.titles)
    names = list(own.names)
    names += [name for name, _ in (folder or Counter()).most_common() if name not in own.names]
    by_short: dict[str, tuple[str, str]] = {}
    for short, long in names:
        by_short.setdefault(_casefold(short), (short, long))
    parts += [f"{long} ({short})" for short, long in by_short.values()]
    kept: list[str] = []
    length = 0
    for part in _unique(parts):
        if length + len(part) + 3 > CONTEXT_MAX_CHARS:
            continue
        kept.append(part)
        length += len(part) + 3
    return " | ".join(kept)


def folder_of(path: str) -> str:
    """The folder of a file's path, as the ledger writes paths (`smb://server/share/folder`
    for a file of a share read over SMB: a path object would fold its `//`)."""
    if "://" in path:
        return posixpath.dirname(path)
    return str(PurePath(path).parent)


@dataclass
class FolderRefresh:
    """What `refresh_folders` did: the documents whose context changed, and their chunks."""

    documents: int = 0
    chunks: int = 0
    changed: list[str] = field(default_factory=list)


Embed = Callable[[list[str]], list[list[float]]]


def refresh_folders(
    folders: Iterable[str], ledger: Ledger, store: VectorStore, embed: Embed
) -> FolderRefresh:
    """Bring every indexed file of the folders to the context its folder now gives it."""
    done = FolderRefresh()
    for folder in sorted(set(folders)):
        records = ledger.indexed_in_folder(folder)
        profiles = {r.path: Profile.from_json(r.profile) for r in records}
        shared = series_names(profiles)
        for record in records:
            if record.profile is None:
                continue  # indexed before profiles: parsed again by the next run
            wanted = context_of(profiles[record.path], shared.get(series_of(record.path)))
            if wanted == record.context:
                continue
            found = store.document_chunks(record.doc_id)
            chunks: list[Chunk] = [chunk.model_copy(update={"context": wanted})
                                   for chunk, _ in found]  # fmt: skip
            if chunks:
                vectors = embed([chunk.embedding_text() for chunk in chunks])
                store.replace_documents([DocumentVersion(record.doc_id, chunks, vectors)])
            ledger.put(replace(record, context=wanted))
            done.documents += 1
            done.chunks += len(chunks)
            done.changed.append(record.path)
    return done
