"""Input requests: a question the agent working a run asks a person, and the answer it gets back
on its next heartbeat."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import Field, StringConstraints, field_validator

from agentplane.models.common import Input, ListQuery, Output

Question = Annotated[str, StringConstraints(min_length=1, max_length=4000)]
Answer = Annotated[str, StringConstraints(min_length=1, max_length=4000)]
Choice = Annotated[str, StringConstraints(min_length=1, max_length=200)]
WorkerId = Annotated[str, StringConstraints(min_length=1, max_length=200)]


class InputRequestStatus(StrEnum):
    open = "open"
    answered = "answered"
    cancelled = "cancelled"


class InputRequestCreate(Input):
    """Asked by the agent working the run (`worker_id` is the one that claimed it)."""

    worker_id: WorkerId
    question: Question
    choices: list[Choice] | None = Field(
        default=None, min_length=1, max_length=20, description="When given, the answer must be one of them"
    )

    @field_validator("choices")
    @classmethod
    def _distinct(cls, choices: list[str] | None) -> list[str] | None:
        if choices is not None and len(set(choices)) != len(choices):
            raise ValueError("choices must be distinct")
        return choices


class InputAnswer(Input):
    answer: Answer


class InputRequestQuery(ListQuery):
    """The input request list's query string: its page (newest first)."""


class InputRequest(Output):
    id: str
    run_id: str
    question: str
    choices: list[str] | None = None
    status: InputRequestStatus
    answer: str | None = None
    answered_by: str | None = None
    asked_at: str
    answered_at: str | None = None
    # When the agent's heartbeat took the answer (it is handed over once).
    delivered_at: str | None = None


class DeliveredAnswer(Output):
    """An answer handed to the agent with its heartbeat."""

    id: str
    question: str
    answer: str
    answered_at: str
