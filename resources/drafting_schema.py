"""What a language-model draft must be: the prompt that asks for it, the validation, the draft file's text.

A draft is one JSON object: an ``EstimandCard``, a ``CausalGraphSpec`` (which must also fit the
study: its treatment and outcome columns in the graph, in those roles) or ``{"markdown": ...}``
for a memo. Every problem is reported as ``field.path: rule (got value)``, one per line.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, StringConstraints, ValidationError

from assimilate.design.card import CausalGraphSpec, EstimandCard
from resources.drafting_log import DraftOutcome
from resources.study import StudyConfig, error_lines

DraftKind = Literal["estimand_card", "causal_graph", "memo"]
DRAFT_KINDS: tuple[DraftKind, ...] = ("estimand_card", "causal_graph", "memo")

# What the model may see of a study: its question and columns, not its alert targets.
_CONTEXT_KEYS = (
    "name",
    "description",
    "cadence",
    "unit_id",
    "treatment",
    "outcome",
    "outcome_type",
    "design",
    "covariates",
    "categorical",
    "post_treatment",
    "primary_estimator",
    "estimand_card",
    "causal_graph",
)
_WHAT = {
    "estimand_card": "the study's estimand card (its causal question in words)",
    "causal_graph": "the study's causal graph: directed edges [cause, effect] and/or a role per variable, "
    "using the study's column names",
    "memo": "a short decision memo in Markdown for the study's stakeholders",
}


class MemoDraft(BaseModel):
    """A drafted memo: Markdown text, not empty."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    markdown: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


SCHEMAS: dict[DraftKind, type[BaseModel]] = {
    "estimand_card": EstimandCard,
    "causal_graph": CausalGraphSpec,
    "memo": MemoDraft,
}


class DraftError(RuntimeError):
    """A drafting call that produced no draft; ``outcome`` says why, the message names the problem."""

    def __init__(self, outcome: DraftOutcome, message: str, *, raw_response: str | None = None) -> None:
        super().__init__(message)
        self.outcome = outcome
        self.raw_response = raw_response


def build_messages(kind: DraftKind, study: StudyConfig, brief: str) -> list[dict[str, str]]:
    """The chat messages: JSON only, the target JSON schema, the study's context and the brief."""
    schema = json.dumps(SCHEMAS[kind].model_json_schema(), sort_keys=True)
    config = study.model_dump(mode="json")
    context = json.dumps({k: config[k] for k in _CONTEXT_KEYS if k in config}, sort_keys=True)
    system = (
        f"You draft {_WHAT[kind]} for a causal-inference study. Answer with one JSON object only: no prose, "
        f"no code fences. The object must validate against this JSON schema:\n{schema}"
    )
    user = f"Study (from its configuration):\n{context}\n\nAnalyst's brief:\n{brief.strip()}"
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def validate_draft(kind: DraftKind, reply: str, study: StudyConfig) -> BaseModel:
    """The validated draft inside a chat-completion reply; ``DraftError`` naming every problem."""
    try:
        content = json.loads(reply)["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise DraftError(
            "invalid_json", "the reply is not an OpenAI chat completion with a message"
        ) from None
    if not isinstance(content, str):
        raise DraftError("invalid_json", "the reply's message content is not text")
    try:
        data = json.loads(content)
    except json.JSONDecodeError as error:
        raise DraftError("invalid_json", f"the model's answer is not valid JSON: {error}") from None
    try:
        draft = SCHEMAS[kind].model_validate(data)
    except ValidationError as error:
        raise DraftError("schema_violation", _problems(kind, error_lines(error))) from None
    problems = _graph_problems(draft, study) if isinstance(draft, CausalGraphSpec) else []
    if problems:
        raise DraftError("schema_violation", _problems(kind, problems))
    return draft


def _problems(kind: DraftKind, lines: list[str]) -> str:
    return f"the model's answer breaks the {kind} schema:\n" + "\n".join(f"  {line}" for line in lines)


def _graph_problems(graph: CausalGraphSpec, study: StudyConfig) -> list[str]:
    """The graph against the study: both parts not empty, treatment and outcome present in their roles."""
    if not graph.edges and not graph.roles:
        return ["edges, roles: give edges and/or roles (both are empty)"]
    nodes = {node for edge in graph.edges for node in edge} | set(graph.roles)
    problems = []
    for role, column in (("treatment", study.treatment), ("outcome", study.outcome)):
        if column not in nodes:
            problems.append(f"the study's {role} column {column!r} is not in the graph")
        given = graph.roles.get(column)
        if given is not None and given != role:
            problems.append(f"roles.{column}: is the study's {role}, not a {given}")
    for name, given in graph.roles.items():
        if given in ("treatment", "outcome") and name not in (study.treatment, study.outcome):
            problems.append(f"roles.{name}: the study's {given} is {getattr(study, given)!r}")
    if problems:
        return problems
    # The same load-time rules as a study file: cycles, role conflicts, controls caused by the
    # treatment, an open backdoor path given the study's covariates.
    try:
        StudyConfig.model_validate(
            {**study.model_dump(exclude_unset=True), "causal_graph": graph.model_dump()}
        )
    except ValidationError as error:
        return error_lines(error)
    return []


def render_draft(kind: DraftKind, document: BaseModel, study: str, model: str, now: datetime) -> str:
    """The draft file's text: a header saying it is an unread draft, then YAML (or the memo's Markdown)."""
    where = "the study's YAML" + ("" if kind == "memo" else f" under `{kind}:`")
    header = [
        f"DRAFT {kind} for study {study}, written by the language model {model} on {now:%Y-%m-%d %H:%M} UTC.",
        f"The pipeline never reads this file. Review it; copy what you accept into {where}.",
    ]
    if isinstance(document, MemoDraft):
        return "<!--\n" + "\n".join(header) + "\n-->\n\n" + document.markdown + "\n"
    body = yaml.safe_dump({kind: document.model_dump(mode="json")}, sort_keys=False, allow_unicode=True)
    return "".join(f"# {line}\n" for line in header) + body
