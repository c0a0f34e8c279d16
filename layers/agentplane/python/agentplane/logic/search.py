"""Workspace search over a token index the table's stream keeps up to date.

Writing: the indexer function receives every change to a task, message (thread or team), thread,
agent, project or run (NEW and OLD images from the stream) and keeps one posting per token,
`PK = WS#<ws>#SEARCH#<token>`, `SK = <kind>#<id>` (kind: task, message, thread, agent, project,
run), carrying the hit's title. Tokens are the item's words (case-folded letters and digits, two or
more characters), their prefixes of three or more characters (search as you type), and the item's
id; at most MAX_TOKENS per item, the title's first. A change writes only the postings it adds (all
of them when the title changed) and deletes the ones it drops; a soft delete (`deleted_at` set) or
a REMOVE drops them all. Only images are read, so replaying a record gives the same postings.

A thread's messages go with the thread: when a thread is deleted, the indexer reads the thread's
messages (Query on its partition, page by page) and drops their postings. Records of different
items reach the indexer in no fixed order, so after indexing a thread message it reads the thread
(one GetItem) and drops what it just wrote if the thread is gone: whichever record comes last, no
message of a deleted thread stays findable.

Reading: every query term must match. The longest term (likely the rarest) drives: one Query per
result group on its partition, newest first, bounded by the limit; each candidate is kept only if
a posting exists for every other term (BatchGetItem). No Scan, and never another workspace: the
workspace id is in every partition key.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeGuard

from agentplane import keys
from agentplane.access import Access
from agentplane.entities.search import SearchPostingItem, postings_of_token, postings_present
from agentplane.entities.threads import ThreadItem, ThreadMessageItem, messages_of_thread
from agentplane.errors import Unprocessable
from agentplane.models.search import SearchGroups, SearchHit, SearchResults, SearchType
from agentplane.store import get_store

MIN_WORD = 2  # shorter words are never indexed nor searched
MIN_PREFIX = 3  # prefixes from this length on are indexed (search as you type)
MAX_TOKEN = 20  # longer words are indexed (and searched) by their first MAX_TOKEN characters
MAX_TOKENS = 40  # per item; the id and the title's words come first
MAX_TERMS = 8
TITLE_CHARS = 160
# Candidates a multi-word query looks at per result type, in pages of at most this many.
_PAGE = 100
_MAX_PAGES = 3

_WORD = re.compile(r"[^\W_]+")
_ID = re.compile(r"^[a-z]{2,8}_[0-9a-z]{10,40}$")


@dataclass(frozen=True)
class Indexed:
    """How one stored entity is indexed: the kind its hits have (the posting's SK prefix), the
    fields that make its title, the rest of its words, and the ids a client needs to open it."""

    entity: str
    kind: str
    group: SearchType
    title_fields: tuple[str, ...]
    text_fields: tuple[str, ...]
    context_fields: tuple[str, ...] = ()


INDEXED: dict[str, Indexed] = {
    spec.entity: spec
    for spec in (
        Indexed("task", "task", SearchType.tasks, ("title",), ("description", "labels", "owner", "assignee")),
        Indexed("thread_message", "message", SearchType.messages, (), ("content", "author"), ("thread_id",)),
        Indexed("team_message", "message", SearchType.messages, (), ("content", "author", "channel"), ("channel",)),
        Indexed("thread", "thread", SearchType.threads, ("title",), ("description",)),
        Indexed("agent", "agent", SearchType.agents, ("name", "display_name"), ("role", "description", "model"),
                ("name",)),
        Indexed("project", "project", SearchType.projects, ("name",), ("description", "repository_url")),
        Indexed("run", "run", SearchType.runs, ("title",), ("prompt", "agent", "model", "kind"),
                ("project_id", "agent")),
    )
}  # fmt: skip
# The stored entities the indexer listens for (the stream event's filter names the same ones).
INDEXED_ENTITIES = tuple(INDEXED)
KIND_OF_GROUP = {spec.group: spec.kind for spec in INDEXED.values()}
_GROUP_NAMES = {**{g.value: g for g in SearchType}, **{spec.kind: spec.group for spec in INDEXED.values()}}
# The scope a caller needs to see each group's hits; groups they cannot read are left out.
GROUP_SCOPES = {
    SearchType.tasks: "tasks:read",
    SearchType.messages: "tasks:read",
    SearchType.threads: "tasks:read",
    SearchType.agents: "agents:read",
    SearchType.projects: "projects:read",
    SearchType.runs: "runs:read",
}


# ---------------------------------------------------------------- tokens


def words(text: str) -> list[str]:
    """The text's words: NFKC-normalized, case-folded runs of letters and digits, two or more long."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return [w for w in _WORD.findall(folded) if len(w) >= MIN_WORD]


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list | tuple | set):
        return " ".join(v for v in value if isinstance(v, str))
    return ""


def _field_words(image: Mapping[str, Any], fields: Iterable[str]) -> list[str]:
    return [w[:MAX_TOKEN] for name in fields for w in words(_text(image.get(name)))]


def _prefixes_by_length(found: list[str]) -> Iterator[str]:
    """Prefixes of every word, the short ones of all words before the longer ones."""
    longest = max((len(w) for w in found), default=0)
    for length in range(MIN_PREFIX, longest):
        for word in found:
            if len(word) > length:
                yield word[:length]


def indexed_spec(image: Mapping[str, Any] | None) -> Indexed | None:
    """The indexing rule for a live, indexable item; None for anything else (or a soft-deleted one)."""
    if not image or image.get("deleted_at"):
        return None
    spec = INDEXED.get(str(image.get(keys.ENTITY, "")))
    if spec is None or not isinstance(image.get("id"), str) or not isinstance(image.get("workspace_id"), str):
        return None
    return spec


def item_tokens(image: Mapping[str, Any] | None) -> list[str]:
    """The tokens an item is found by, most useful first, at most MAX_TOKENS."""
    spec = indexed_spec(image)
    if spec is None or image is None:
        return []
    title = _field_words(image, spec.title_fields)
    text = _field_words(image, spec.text_fields)
    ordered = [str(image["id"]).lower()]
    for token in (*title, *_prefixes_by_length(title), *text, *_prefixes_by_length(text)):
        ordered.append(token)
    return list(dict.fromkeys(ordered))[:MAX_TOKENS]


def query_terms(query: str) -> list[str]:
    """The tokens a query looks up: ids whole, other words as indexed (cut to MAX_TOKEN)."""
    terms: list[str] = []
    for raw in query.split():
        lowered = raw.casefold()
        if _ID.match(lowered):
            terms.append(lowered)
        else:
            terms.extend(w[:MAX_TOKEN] for w in words(raw))
    return list(dict.fromkeys(terms))[:MAX_TERMS]


def _hit(image: Mapping[str, Any], spec: Indexed) -> dict[str, Any]:
    title = next((image[f] for f in spec.title_fields if isinstance(image.get(f), str) and image[f]), None)
    if title is None:
        title = next((_text(image.get(f)) for f in spec.text_fields if _text(image.get(f))), "")
    title = " ".join(title.split())
    if len(title) > TITLE_CHARS:
        title = title[: TITLE_CHARS - 1] + "…"
    context = {f: image[f] for f in spec.context_fields if isinstance(image.get(f), str) and image[f]}
    return {"type": spec.kind, "id": str(image["id"]), "title": title, "context": context}


# ---------------------------------------------------------------- indexing (stream consumer)


@dataclass(frozen=True)
class IndexChange:
    put: list[SearchPostingItem]
    delete: list[keys.Key]


def index_change(old: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> IndexChange:
    """The postings to write and delete for one change of an item, from its OLD and NEW images."""
    old_spec, new_spec = indexed_spec(old), indexed_spec(new)
    old_tokens = item_tokens(old) if old_spec else []
    new_tokens = item_tokens(new) if new_spec else []
    old_hit = _hit(old, old_spec) if old and old_spec else None
    new_hit = _hit(new, new_spec) if new and new_spec else None
    deletes: list[keys.Key] = []
    if old and old_spec:
        ws, kind, item_id = str(old["workspace_id"]), old_spec.kind, str(old["id"])
        kept = set(new_tokens) if new_hit and new_hit["id"] == item_id else set()
        deletes = [keys.search_posting_key(ws, t, kind, item_id) for t in old_tokens if t not in kept]
    puts: list[SearchPostingItem] = []
    if new and new_spec and new_hit:
        ws = str(new["workspace_id"])
        unchanged = old_hit == new_hit
        written = set(old_tokens) if unchanged else set()
        puts = [
            SearchPostingItem(workspace_id=ws, token=token, **new_hit) for token in new_tokens if token not in written
        ]
    return IndexChange(put=puts, delete=deletes)


def _write(change: IndexChange) -> None:
    """Puts and deletes, at most 100 to a transaction (each is idempotent, none has a condition)."""
    store = get_store()
    tx = store.transaction()
    for posting in change.put:
        tx.save(posting)
        if tx.size == tx.MAX_OPERATIONS:
            tx.commit()
            tx = store.transaction()
    for key in change.delete:
        tx.discard(SearchPostingItem, key)
        if tx.size == tx.MAX_OPERATIONS:
            tx.commit()
            tx = store.transaction()
    tx.commit()


def _postings_of(image: Mapping[str, Any]) -> list[keys.Key]:
    spec = indexed_spec(image)
    if spec is None:
        return []
    ws, item_id = str(image["workspace_id"]), str(image["id"])
    return [keys.search_posting_key(ws, token, spec.kind, item_id) for token in item_tokens(image)]


def _thread_deleted(old: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> bool:
    """The change takes a live thread away (soft delete, or the item removed)."""
    if not old or old.get(keys.ENTITY) != ThreadItem.kind() or old.get("deleted_at"):
        return False
    return new is None or bool(new.get("deleted_at"))


def _is_thread_message(image: Mapping[str, Any] | None, change: IndexChange) -> TypeGuard[Mapping[str, Any]]:
    """The change indexed a thread message (which is findable only while its thread is live)."""
    return bool(image and change.put and image.get(keys.ENTITY) == ThreadMessageItem.kind() and image.get("thread_id"))


def _thread_is_live(ws: str, thread_id: str) -> bool:
    thread = get_store().read(ThreadItem, keys.thread_key(ws, thread_id))
    return thread is not None and not thread.deleted_at


def _drop_thread_messages(ws: str, thread_id: str) -> int:
    """Drop the postings of every message of the thread; returns how many messages it read."""
    start: dict[str, Any] | None = None
    read = 0
    while True:
        page = messages_of_thread(ws, thread_id, limit=_PAGE, start=start)
        read += len(page.items)
        postings = [key for message in page.items for key in _postings_of(message.as_item())]
        _write(IndexChange(put=[], delete=postings))
        start = page.last_key
        if start is None:
            return read


def apply_change(old: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> IndexChange:
    """Write one item's index change. Puts and deletes are idempotent, so a retried record is safe;
    records of one item arrive in order (one stream shard), so the last image wins."""
    change = index_change(old, new)
    _write(change)
    if _thread_deleted(old, new):
        assert old is not None
        _drop_thread_messages(str(old["workspace_id"]), str(old["id"]))
    elif _is_thread_message(new, change) and not _thread_is_live(str(new["workspace_id"]), str(new["thread_id"])):
        _write(IndexChange(put=[], delete=_postings_of(new)))
    return change


# ---------------------------------------------------------------- searching


def _has_every_term(ws: str, candidates: list[SearchPostingItem], terms: list[str]) -> list[SearchPostingItem]:
    """The candidates with a posting under each of `terms` (BatchGetItem, 100 keys at a time)."""
    if not terms:
        return candidates
    found = postings_present([keys.search_posting_key(ws, term, c.type, c.id) for c in candidates for term in terms])
    per_candidate = len(terms)
    return [
        candidate
        for index, candidate in enumerate(candidates)
        if all(found[index * per_candidate : (index + 1) * per_candidate])
    ]


def _search_kind(ws: str, kind: str, driver: str, others: list[str], limit: int) -> list[SearchPostingItem]:
    hits: list[SearchPostingItem] = []
    start: dict[str, Any] | None = None
    page_size = limit if not others else min(_PAGE, max(limit * 4, 20))
    for _ in range(_MAX_PAGES):
        page = postings_of_token(ws, driver, kind, limit=page_size, start=start)
        hits.extend(_has_every_term(ws, page.items, others))
        start = page.last_key
        if len(hits) >= limit or not start or not others:
            break
    return hits[:limit]


def parse_types(raw: str | None) -> list[SearchType] | None:
    """`types=tasks,runs` (singular names too) as groups; None when not given. Unknown is a 422."""
    if raw is None or not raw.strip():
        return None
    names = [name.strip().lower() for name in raw.split(",") if name.strip()]
    groups: list[SearchType] = []
    unknown = []
    for name in names:
        group = _GROUP_NAMES.get(name)
        if group is None:
            unknown.append(name)
        else:
            groups.append(group)
    if unknown:
        allowed = ", ".join(g.value for g in SearchType)
        raise Unprocessable(
            f"unknown search type(s): {', '.join(unknown)}",
            errors=[{"field": "types", "message": f"'{n}' is not one of {allowed}"} for n in unknown],
        )
    return groups


def readable_groups(access: Access, types: list[SearchType] | None) -> list[SearchType]:
    """The groups to search: the ones asked for (all by default) that the caller may read. Asking
    for one by name without its scope is a 403 naming the scope."""
    if types:
        wanted = list(dict.fromkeys(types))
        for group in wanted:
            access.require(GROUP_SCOPES[group])
        return wanted
    return [group for group in SearchType if access.may(GROUP_SCOPES[group])]


def search(access: Access, query: str, types: list[SearchType] | None, limit: int) -> SearchResults:
    ws = access.workspace_id
    wanted = readable_groups(access, types)
    terms = query_terms(query)
    groups: dict[str, list[SearchHit]] = {}
    if terms:
        driver = max(terms, key=len)
        others = [t for t in terms if t != driver]
        for group in wanted:
            items = _search_kind(ws, KIND_OF_GROUP[group], driver, others, limit)
            groups[group.value] = [SearchHit.model_validate(posting.hit()) for posting in items]
    return SearchResults(
        query=query,
        terms=terms,
        types=wanted,
        results=SearchGroups.model_validate(groups),
        total=sum(len(hits) for hits in groups.values()),
    )
