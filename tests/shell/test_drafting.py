"""Drafting with a language model against a real HTTP server on 127.0.0.1 serving canned answers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from assimilate.design.card import CausalGraphSpec, EstimandCard
from orchestration.instance import PROJECT_ROOT
from resources.drafting import LlmNotConfiguredError, LlmSettings, draft
from resources.drafting_log import DraftingLog, strip_credentials
from resources.drafting_schema import DraftError
from resources.study import StudyConfig, load_study
from resources.warehouse import WAREHOUSE_URL_ENV, PostgresWarehouse, Warehouse, WarehouseResource
from scripts.draft import main

SECRET = "sk-test-7f3a9c-never-log-me"
KEY_ENV = "ASSIMILATE_TEST_LLM_KEY"
CARD = {
    "business_question": "Should customer success keep calling at-risk accounts?",
    "causal_question": "Effect of proactive outreach on churn within the month",
    "unit": "account",
    "treatment": "proactive outreach",
    "control_condition": "no outreach",
    "outcome": "churn within the month",
    "time_window": "one calendar month",
    "target_population": "active accounts",
    "estimand": "ATE",
    "required_assumptions": ["no unmeasured confounding given the account profile", "overlap"],
    "likely_threats": ["outreach targeted on unrecorded signals"],
    "variables_to_audit": ["health_score"],
}
GRAPH = {
    "edges": [["health_score", "outreach"], ["health_score", "churn"], ["outreach", "churn"]],
    "roles": {
        "health_score": "confounder",
        "post_outreach_engagement": "mediator",
        **dict.fromkeys(
            ["company_size", "tenure_months", "usage_score", "prior_tickets", "region"], "confounder"
        ),
    },
}


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class FakeLlm:
    """A canned chat-completion server: ``status``, ``content`` (or ``body``) and ``delay_s`` per test."""

    url: str = ""
    status: int = 200
    content: str = ""
    body: str | None = None
    delay_s: float = 0.0
    received: list[Received] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)


def completion(content: str) -> str:
    message = {"role": "assistant", "content": content}
    choice = {"index": 0, "message": message, "finish_reason": "stop"}
    return json.dumps({"id": "chatcmpl-1", "object": "chat.completion", "model": "m", "choices": [choice]})


@pytest.fixture
def llm() -> Iterator[FakeLlm]:
    fake = FakeLlm()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length))
            fake.received.append(Received(self.path, dict(self.headers.items()), body))
            if fake.delay_s:
                fake.release.wait(fake.delay_s)
            # An endpoint that echoes what it was sent: the key must still never reach a log.
            text = fake.body if fake.body is not None else completion(fake.content)
            text = text.replace("{auth}", self.headers.get("Authorization", ""))
            payload = text.encode()
            try:
                self.send_response(fake.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except OSError:  # the client gave up (the timeout case)
                pass

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    fake.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    try:
        yield fake
    finally:
        fake.release.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def study() -> StudyConfig:
    return load_study(PROJECT_ROOT / "studies" / "retention_outreach.yaml")


@pytest.fixture
def store(tmp_path: Path) -> Warehouse:
    return Warehouse(tmp_path / "warehouse.duckdb", lock_timeout_s=30)


def run(kind: Any, llm: FakeLlm, study: StudyConfig, tmp_path: Path, store: Warehouse, **kw: Any) -> Path:
    settings = LlmSettings(
        base_url=llm.url, model="test-model", api_key_env=KEY_ENV, timeout_s=kw.pop("timeout_s", 5.0)
    )
    log = DraftingLog(tmp_path / "audit", store)
    brief = "Outreach is targeted at accounts with low health scores."
    return draft(
        kind, study=study, brief=brief, settings=settings, drafts_dir=tmp_path / "drafts", log=log, **kw
    )


def logged(tmp_path: Path, store: Warehouse) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    lines = (tmp_path / "audit" / "retention_outreach" / "drafting.jsonl").read_text().splitlines()
    rows = store.read_table("retention_outreach", "drafting_log").to_dict("records")
    return [json.loads(line) for line in lines], rows


def assert_no_secret(tmp_path: Path, store: Warehouse) -> None:
    text = (tmp_path / "audit" / "retention_outreach" / "drafting.jsonl").read_text()
    assert SECRET not in text
    assert SECRET not in json.dumps(
        store.read_table("retention_outreach", "drafting_log").to_dict("records"), default=str
    )


def drafts(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "drafts").rglob("*")) if (tmp_path / "drafts").exists() else []


def test_valid_estimand_card_is_written_as_a_draft_and_audited(
    llm: FakeLlm, study: StudyConfig, tmp_path: Path, store: Warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, SECRET)
    llm.content = json.dumps(CARD)
    path = run("estimand_card", llm, study, tmp_path, store)

    (request,) = llm.received
    assert request.path == "/v1/chat/completions"
    assert request.headers["Authorization"] == f"Bearer {SECRET}"
    assert request.body["model"] == "test-model"
    assert request.body["temperature"] == 0
    assert request.body["response_format"] == {"type": "json_object"}
    system, user = request.body["messages"]
    assert (
        system["role"] == "system"
        and "JSON" in system["content"]
        and '"business_question"' in system["content"]
    )
    assert '"treatment": "outreach"' in user["content"] and '"churn"' in user["content"]
    assert "health_score" in user["content"] and "low health scores" in user["content"]

    assert path.parent == tmp_path / "drafts" / "retention_outreach"
    assert path.name.startswith("estimand_card-") and path.suffix == ".yaml"
    text = path.read_text()
    assert text.startswith("# DRAFT estimand_card") and "never reads this file" in text
    assert EstimandCard.model_validate(yaml.safe_load(text)["estimand_card"]) == EstimandCard.model_validate(
        CARD
    )

    (line,), (row,) = logged(tmp_path, store)
    for record in (line, row):
        assert record["outcome"] == "valid" and record["error"] is None
        assert record["kind"] == "estimand_card" and record["study"] == "retention_outreach"
        assert record["draft_path"] == str(path) and record["model"] == "test-model"
        assert record["base_url"] == llm.url and record["raw_response"] == completion(json.dumps(CARD))
        assert record["recorded_at"] and record["draft_id"]
    assert line["messages"] == request.body["messages"]
    assert json.loads(row["messages_json"]) == request.body["messages"]
    assert row["partition_key"] == line["draft_id"]
    assert_no_secret(tmp_path, store)


def test_invalid_json_writes_no_draft_and_is_audited(
    llm: FakeLlm, study: StudyConfig, tmp_path: Path, store: Warehouse
) -> None:
    llm.content = '{"business_question": "Should we", '
    with pytest.raises(DraftError, match=r"estimand_card draft .*not valid JSON") as caught:
        run("estimand_card", llm, study, tmp_path, store)
    assert caught.value.outcome == "invalid_json"
    assert drafts(tmp_path) == []
    (line,), (row,) = logged(tmp_path, store)
    for record in (line, row):
        assert record["outcome"] == "invalid_json" and "not valid JSON" in record["error"]
        assert (
            record["draft_path"] is None and '"business_question\\": \\"Should we' in record["raw_response"]
        )


def test_schema_violation_lists_each_field_and_rule(
    llm: FakeLlm, study: StudyConfig, tmp_path: Path, store: Warehouse
) -> None:
    card = {k: v for k, v in CARD.items() if k != "required_assumptions"} | {"estimand": "CATE"}
    llm.content = json.dumps(card)
    with pytest.raises(DraftError) as caught:
        run("estimand_card", llm, study, tmp_path, store)
    message = str(caught.value)
    assert caught.value.outcome == "schema_violation"
    assert "estimand_card" in message
    assert "estimand: must be one of 'ATE', 'ATT', 'ATC' or 'LATE' (got 'CATE')" in message
    assert "required_assumptions: is required" in message
    assert drafts(tmp_path) == []
    (line,), (row,) = logged(tmp_path, store)
    assert line["outcome"] == row["outcome"] == "schema_violation"
    assert line["error"] == row["error"] == message


def test_timeout_gives_up_after_the_configured_time(
    llm: FakeLlm, study: StudyConfig, tmp_path: Path, store: Warehouse
) -> None:
    llm.content, llm.delay_s = json.dumps(CARD), 10.0
    started = time.monotonic()
    with pytest.raises(DraftError, match=r"no answer within 0.5 s") as caught:
        run("estimand_card", llm, study, tmp_path, store, timeout_s=0.5)
    assert time.monotonic() - started < 5
    assert caught.value.outcome == "timeout"
    assert drafts(tmp_path) == []
    (line,), (row,) = logged(tmp_path, store)
    assert line["outcome"] == row["outcome"] == "timeout"
    assert line["raw_response"] is None and line["timeout_s"] == 0.5


def test_http_500_is_an_http_error_and_an_echoed_key_is_redacted(
    llm: FakeLlm, study: StudyConfig, tmp_path: Path, store: Warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, SECRET)
    llm.status, llm.body = 500, '{"error": "model crashed", "you_sent": "{auth}"}'
    with pytest.raises(DraftError, match=r"estimand_card draft .*HTTP 500") as caught:
        run("estimand_card", llm, study, tmp_path, store)
    assert caught.value.outcome == "http_error"
    assert SECRET not in str(caught.value.raw_response) and "[redacted]" in str(caught.value.raw_response)
    assert drafts(tmp_path) == []
    (line,), (row,) = logged(tmp_path, store)
    assert line["outcome"] == row["outcome"] == "http_error"
    assert "model crashed" in line["raw_response"] and "Bearer [redacted]" in row["raw_response"]
    assert_no_secret(tmp_path, store)


def test_valid_dag_without_a_key_sends_no_authorization(
    llm: FakeLlm, study: StudyConfig, tmp_path: Path, store: Warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    llm.content = json.dumps(GRAPH)
    path = run("causal_graph", llm, study, tmp_path, store)
    assert "Authorization" not in llm.received[0].headers
    assert '"edges"' in llm.received[0].body["messages"][0]["content"]
    graph = CausalGraphSpec.model_validate(yaml.safe_load(path.read_text())["causal_graph"])
    assert graph == CausalGraphSpec.model_validate(GRAPH)
    (line,), (row,) = logged(tmp_path, store)
    assert line["outcome"] == row["outcome"] == "valid" and line["kind"] == "causal_graph"


@pytest.mark.parametrize(
    ("graph", "problem"),
    [
        ({"edges": [["health_score", "outreach"]]}, "outcome column 'churn' is not in the graph"),
        (GRAPH | {"roles": {"outreach": "confounder"}}, "roles.outreach: is the study's treatment"),
        ({"edges": [], "roles": {}}, "both are empty"),
        ({"edges": [["outreach", "churn", "x"]]}, "edges[0]: Tuple should have at most 2 items"),
        (  # the same rules as a study file: a control caused by the treatment
            {
                "edges": [*GRAPH["edges"], ["outreach", "usage_score"]],
                "roles": {k: v for k, v in GRAPH["roles"].items() if k != "usage_score"},
            },
            "'usage_score' is a descendant of the treatment 'outreach'",
        ),
        (GRAPH | {"edges": [*GRAPH["edges"], ["churn", "health_score"]]}, "cycle"),
        (  # a confounder left out of the graph: the study's covariates no longer close every path
            {"edges": GRAPH["edges"], "roles": {"health_score": "confounder"}},
            "'company_size' is not in causal_graph",
        ),
    ],
)
def test_dag_that_does_not_fit_the_study_is_rejected(
    llm: FakeLlm, study: StudyConfig, tmp_path: Path, store: Warehouse, graph: dict[str, Any], problem: str
) -> None:
    llm.content = json.dumps(graph)
    with pytest.raises(DraftError, match="causal_graph") as caught:
        run("causal_graph", llm, study, tmp_path, store)
    assert caught.value.outcome == "schema_violation" and problem in str(caught.value)
    assert drafts(tmp_path) == []


def test_valid_memo_is_written_as_markdown(
    llm: FakeLlm, study: StudyConfig, tmp_path: Path, store: Warehouse
) -> None:
    llm.content = json.dumps({"markdown": "# Outreach\n\nKeep calling: churn falls by 2 points."})
    path = run("memo", llm, study, tmp_path, store)
    assert path.suffix == ".md" and path.name.startswith("memo-")
    text = path.read_text()
    assert text.startswith("<!--\nDRAFT memo") and "never reads this file" in text
    assert text.endswith("# Outreach\n\nKeep calling: churn falls by 2 points.\n")
    assert '"markdown"' in llm.received[0].body["messages"][0]["content"]


def test_empty_memo_is_a_schema_violation(
    llm: FakeLlm, study: StudyConfig, tmp_path: Path, store: Warehouse
) -> None:
    llm.content = json.dumps({"markdown": "  "})
    with pytest.raises(
        DraftError, match=r"(?s)memo draft .*markdown: String should have at least 1 character"
    ) as caught:
        run("memo", llm, study, tmp_path, store)
    assert caught.value.outcome == "schema_violation" and drafts(tmp_path) == []


def test_reply_that_is_not_a_chat_completion_is_invalid(
    llm: FakeLlm, study: StudyConfig, tmp_path: Path, store: Warehouse
) -> None:
    llm.body = "<html>proxy error</html>"
    with pytest.raises(DraftError, match="not an OpenAI chat completion") as caught:
        run("memo", llm, study, tmp_path, store)
    assert caught.value.outcome == "invalid_json"
    (line,), _ = logged(tmp_path, store)
    assert line["raw_response"] == "<html>proxy error</html>"


def test_cli_writes_the_draft_and_never_overwrites_out(
    llm: FakeLlm, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    llm.content = json.dumps(CARD)
    common = ["--study", "retention_outreach", "--brief", "b", "--base-url", llm.url, "--model", "m"]
    out = tmp_path / "card.yaml"
    assert main(["estimand_card", *common, "--data-dir", str(tmp_path / "data"), "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert yaml.safe_load(out.read_text())["estimand_card"]["estimand"] == "ATE"
    assert main(["estimand_card", *common, "--data-dir", str(tmp_path / "data"), "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    llm.content = "not json"
    assert main(["estimand_card", *common, "--data-dir", str(tmp_path / "data")]) == 1
    assert "rejected (invalid_json)" in capsys.readouterr().err
    studies_out = PROJECT_ROOT / "studies" / "draft.yaml"
    assert (
        main(["estimand_card", *common, "--data-dir", str(tmp_path / "data"), "--out", str(studies_out)]) == 2
    )
    assert not studies_out.exists()


@pytest.mark.parametrize("backend", ["duckdb", "postgres"])
def test_cli_audits_the_call_in_the_pipelines_warehouse_or_the_named_file(
    backend: str,
    llm: FakeLlm,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    monkeypatch.delenv(WAREHOUSE_URL_ENV, raising=False)
    if backend == "postgres":
        monkeypatch.setenv(WAREHOUSE_URL_ENV, request.getfixturevalue("postgres_warehouse_url"))
    llm.content = json.dumps(CARD)
    data = tmp_path / "data"
    common = ["--study", "retention_outreach", "--brief", "b", "--base-url", llm.url, "--model", "m"]
    assert main(["estimand_card", *common, "--data-dir", str(data)]) == 0
    pipeline = WarehouseResource.for_data_dir(data).open()
    assert isinstance(pipeline, PostgresWarehouse) == (backend == "postgres")
    (row,) = pipeline.read_table("retention_outreach", "drafting_log").to_dict("records")
    assert row["outcome"] == "valid" and row["model"] == "m"
    assert (data / "warehouse.duckdb").exists() == (backend == "duckdb")
    named = tmp_path / "named.duckdb"  # a path on the command line is that DuckDB file, whatever the variable
    assert main(["estimand_card", *common, "--data-dir", str(data), "--warehouse", str(named)]) == 0
    assert len(Warehouse(named).read_table("retention_outreach", "drafting_log")) == 1
    assert len(pipeline.read_table("retention_outreach", "drafting_log")) == 1


def test_cli_without_a_model_says_so_and_exits_2(tmp_path: Path) -> None:
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path)}
    data = tmp_path / "data"
    command = [sys.executable, "-m", "scripts.draft", "memo", "--study", "retention_outreach", "--brief", "b"]
    done = subprocess.run(
        [*command, "--data-dir", str(data)],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert "no language model configured" in done.stderr
    assert "Traceback" not in done.stderr
    assert not data.exists()


def test_settings_resolution() -> None:
    with pytest.raises(LlmNotConfiguredError, match="no language model configured"):
        LlmSettings.resolve(environ={})
    with pytest.raises(LlmNotConfiguredError, match="ASSIMILATE_LLM_MODEL"):
        LlmSettings.resolve(environ={"ASSIMILATE_LLM_BASE_URL": "http://127.0.0.1:1/v1"})
    env = {
        "ASSIMILATE_LLM_BASE_URL": "http://127.0.0.1:1/v1",
        "ASSIMILATE_LLM_MODEL": "m",
        "ASSIMILATE_LLM_TIMEOUT_S": "3",
    }
    assert LlmSettings.resolve(environ=env) == LlmSettings(
        base_url="http://127.0.0.1:1/v1", model="m", timeout_s=3.0
    )
    assert LlmSettings.resolve(model="other", environ=env).model == "other"
    with pytest.raises(ValueError, match="must not hold credentials"):
        LlmSettings(base_url="http://user:pw@127.0.0.1:1/v1", model="m")
    with pytest.raises(ValueError, match="timeout_s"):
        LlmSettings(base_url="http://127.0.0.1:1/v1", model="m", timeout_s=0)


def test_strip_credentials() -> None:
    assert strip_credentials("https://user:pw@127.0.0.1:8443/v1?api_key=abc#x") == "https://127.0.0.1:8443/v1"
    assert strip_credentials("http://[::1]:8080/v1") == "http://[::1]:8080/v1"


def test_pipeline_never_reads_drafts() -> None:
    offenders = [
        str(path.relative_to(PROJECT_ROOT))
        for package in ("assets", "orchestration", "checks", "resources")
        for path in sorted((PROJECT_ROOT / package).rglob("*.py"))
        if not path.name.startswith("drafting") and "drafts" in path.read_text(encoding="utf-8")
    ]
    assert offenders == []
    assert "draft" not in (PROJECT_ROOT / "orchestration" / "definitions.py").read_text()
