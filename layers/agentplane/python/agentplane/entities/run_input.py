"""Input requests: the questions a run's agent asks a person, one item each in the run's data
partition (ids sort by when they were asked). The run names its open request and the answered ones
its agent has not yet been handed (see logic.run_input)."""

from __future__ import annotations

from typing import Any

from pynamodb.attributes import UnicodeAttribute

from agentplane import keys
from agentplane.entities.base import Entity, Keys, ListDocument
from agentplane.entities.patterns import access_pattern
from agentplane.models.run_input import InputRequest, InputRequestStatus
from agentplane.store import EntityPage, QuerySpec, get_store


class InputRequestItem(Entity[InputRequest], discriminator="run_input"):
    workspace_id = UnicodeAttribute()
    run_id = UnicodeAttribute()
    id = UnicodeAttribute()
    question = UnicodeAttribute()
    choices = ListDocument(null=True)
    status = UnicodeAttribute()
    answer = UnicodeAttribute(null=True)
    answered_by = UnicodeAttribute(null=True)
    asked_by = UnicodeAttribute()  # the worker that asked
    asked_at = UnicodeAttribute()
    answered_at = UnicodeAttribute(null=True)
    delivered_at = UnicodeAttribute(null=True)
    cancelled_at = UnicodeAttribute(null=True)

    internal = frozenset({"workspace_id", "asked_by", "cancelled_at"})

    def where(self) -> Keys:
        return Keys(keys.run_input_key(self.workspace_id, self.run_id, self.id))

    @property
    def state(self) -> InputRequestStatus:
        return InputRequestStatus(self.status)

    def accepts(self, answer: str) -> bool:
        """A request with choices takes one of them; any answer otherwise."""
        return not self.choices or answer in self.choices


@access_pattern(InputRequestItem, partition=keys.run_data_pk, sort=f"prefix {keys.RUN_INPUT_PREFIX}, newest first")
def input_requests_of_run(
    ws_id: str, run_id: str, *, limit: int, start: dict[str, Any] | None
) -> EntityPage[InputRequestItem]:
    """The questions a run's agent asked, newest first, strongly consistent (an answer given a
    moment ago shows)."""
    spec = QuerySpec(
        keys.run_data_pk(ws_id, run_id), sk_prefix=keys.RUN_INPUT_PREFIX, newest_first=True, consistent=True
    )
    return get_store().select(InputRequestItem, spec, limit=limit, start=start)
