"""Secrets never leak, and nothing listens beyond the loopback interface.

The pipeline runs with a webhook URL carrying a secret token (a real receiver on 127.0.0.1) and an
SMTP password (a real SMTP server on 127.0.0.1 that refuses STARTTLS, so the e-mail fails and its
error is logged), on a batch that fails an assumption check so that alerts go out. Then every place
the project writes to is searched for both secrets: Dagster's event log and run records, every
table of every schema of the warehouse, the audit trail, every file under the data folder (alert
log, delivery log, reports) and everything printed to stdout and stderr.
"""

from __future__ import annotations

import ast
import io
import re
import secrets
import socket
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass

import dagster as dg
import numpy as np
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from orchestration.instance import PROJECT_ROOT
from resources.alerts import JsonlAlertLog
from resources.duckdb_tables import quote_identifier
from resources.study import AlertSettings
from tests.backend_support import back_in_module_warehouse, module_warehouse
from tests.pipeline_support import Project, ab_batch, example_study, webhook_receiver, write_batch

TOKEN = f"tok{secrets.token_hex(12)}"
PASSWORD = f"pw{secrets.token_hex(12)}"
SECRETS = {"webhook token": TOKEN, "SMTP password": PASSWORD}
STUDY = "ab_checkout"
PACKAGES = ("assimilate", "assets", "checks", "orchestration", "resources", "scripts", "benchmarks")


class _Inbox:
    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802 - aiosmtpd hook
        return "250 Message accepted for delivery"


@contextmanager
def smtp_server() -> Iterator[int]:
    """A real SMTP server on 127.0.0.1 (aiosmtpd in its own thread; it offers no STARTTLS)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    controller = Controller(_Inbox(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


def _leaks(text: str) -> list[str]:
    return [name for name, secret in SECRETS.items() if secret in text]


@dataclass
class Alerted:
    project: Project
    received: list[dict[str, object]]  # webhook bodies the receiver got
    printed: str  # everything written to stdout and stderr while the pipeline ran


@pytest.fixture(scope="module")
def alerted_built(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Alerted, str | None]]:
    """Built once for the module; on PostgreSQL in a database of its own (the per-test one is another)."""
    with module_warehouse(request) as url:
        yield _run_alerting_project(tmp_path_factory), url


@pytest.fixture
def alerted(alerted_built: tuple[Alerted, str | None], monkeypatch: pytest.MonkeyPatch) -> Alerted:
    built, url = alerted_built
    back_in_module_warehouse(monkeypatch, url)
    return built


def _run_alerting_project(tmp_path_factory: pytest.TempPathFactory) -> Alerted:
    study = example_study(STUDY, alerts=AlertSettings(email_to=("ops@example.org",)))
    project = Project(
        data=tmp_path_factory.mktemp("security") / "data",
        studies=[study],
        instance=dg.DagsterInstance.ephemeral(),
    )
    folder = project.landing(STUDY)
    write_batch(folder, "2025-01", ab_batch(0))
    broken = ab_batch(9, n=1000).assign(treatment=lambda f: (np.arange(len(f)) % 10 < 3).astype(int))
    write_batch(folder, "2025-02", broken)  # sample-ratio mismatch: an ERROR check fails
    with pytest.MonkeyPatch.context() as env, webhook_receiver() as (url, received), smtp_server() as port:
        env.setenv("ASSIMILATE_WEBHOOK_URL", f"{url}/T000/{TOKEN}?token={TOKEN}")
        env.setenv("ASSIMILATE_SMTP_HOST", "127.0.0.1")
        env.setenv("ASSIMILATE_SMTP_PORT", str(port))
        env.setenv("ASSIMILATE_SMTP_USER", "assimilate-bot")
        env.setenv("ASSIMILATE_SMTP_PASSWORD", PASSWORD)
        printed = io.StringIO()
        with redirect_stdout(printed), redirect_stderr(printed):
            runs = project.tick()
        assert [r.success for r in runs] == [True, True]
    return Alerted(project, received, printed.getvalue())


def test_the_failing_batch_alerted_through_both_sinks(alerted: Alerted) -> None:
    project, received = alerted.project, alerted.received
    steps = project.steps(STUDY).set_index("batch")
    assert bool(steps.at["2025-02-01", "excluded"])
    onsets = [a for a in project.alerts() if a.kind == "onset" and a.partition_key == "2025-02-01"]
    assert len(onsets) == 1 and len(received) == 1  # the secret URL was used: the receiver got it
    outcomes = {(d["sink"], d["status"]) for d in JsonlAlertLog(project.data / "alerts.jsonl").deliveries()}
    assert ("webhook", "delivered") in outcomes
    assert ("email", "failed") in outcomes  # the sink built with the password was tried


def test_secrets_are_not_in_the_dagster_event_log_or_run_records(
    alerted: Alerted,
) -> None:
    project = alerted.project
    runs = project.instance.get_runs()
    assert len(runs) == 2
    texts = []
    for run in runs:
        texts.append(dg.serialize_value(run))
        for entry in project.instance.all_logs(run.run_id):
            texts.append(dg.serialize_value(entry.dagster_event) if entry.dagster_event else "")
            texts.append(entry.message or "")
            texts.append(entry.user_message or "")
    text = "\n".join(texts)
    assert "2025-02-01" in text and "check_covariate_table_sample_ratio_mismatch" in text
    assert _leaks(text) == []


def test_secrets_are_not_in_any_warehouse_table(alerted: Alerted) -> None:
    project = alerted.project
    store = project.warehouse
    tables = store.execute_read(
        "SELECT table_schema, table_name FROM information_schema.tables "
        "WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ('pg_catalog', 'information_schema') "
        "ORDER BY table_schema, table_name"
    )
    assert {"audit_trail", "posterior_steps", "raw_rows", "quarantine"} <= set(tables["table_name"])
    leaks = {}
    for schema, table in zip(tables["table_schema"], tables["table_name"], strict=True):
        frame = store.execute_read(f"SELECT * FROM {quote_identifier(schema)}.{quote_identifier(table)}")
        if found := _leaks(frame.to_csv(index=False)):
            leaks[f"{schema}.{table}"] = found
    assert leaks == {}


def test_secrets_are_not_in_the_audit_trail(alerted: Alerted) -> None:
    project = alerted.project
    audit = project.warehouse.read_table(STUDY, "audit_trail")
    assert len(audit) == 2
    text = audit.to_csv(index=False)
    assert "ASSIMILATE_WEBHOOK_URL" in text  # the variable's name is recorded, never its value
    assert _leaks(text) == []


def test_secrets_are_not_in_any_file_the_project_wrote(
    alerted: Alerted,
) -> None:
    project = alerted.project
    files = [p for p in project.data.rglob("*") if p.is_file() and not p.name.startswith("warehouse.duckdb")]
    names = {p.relative_to(project.data).as_posix() for p in files}
    assert {"alerts.jsonl", "alerts.deliveries.jsonl"} <= names
    assert any(name.startswith(f"reports/{STUDY}/") for name in names)
    leaks = {}
    for path in files:
        content = path.read_bytes()
        if found := [name for name, secret in SECRETS.items() if secret.encode() in content]:
            leaks[path.relative_to(project.data).as_posix()] = found
    assert leaks == {}


def test_secrets_are_not_printed(alerted: Alerted) -> None:
    assert _leaks(alerted.printed) == []


def _shell_commands(text: str) -> list[str]:
    return [
        line
        for line in text.splitlines()
        if re.search(r"\bdagster(-webserver)?\s+dev\b|dagster-webserver", line)
    ]


def test_the_ui_binds_the_loopback_interface_only() -> None:
    script = (PROJECT_ROOT / "scripts" / "ui.sh").read_text(encoding="utf-8")
    commands = [line for line in _shell_commands(script) if not line.lstrip().startswith("#")]
    assert commands, "scripts/ui.sh no longer starts the UI"
    for command in commands:
        assert re.search(r"(-h|--host)\s+127\.0\.0\.1\b", command), command
    readme = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    ui_lines = [line for line in readme.splitlines() if "scripts/ui.sh" in line and line.startswith("bash ")]
    assert ui_lines and all("127.0.0.1" in line for line in ui_lines)
    for command in _shell_commands(readme):
        assert re.search(r"(-h|--host)\s+127\.0\.0\.1\b", command), command
    for text in (script, readme):
        assert "0.0.0.0" not in text


def binds_everywhere(source: str) -> list[str]:
    """Where Python code binds all interfaces: the literal "0.0.0.0" / "::", or ("", port)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Constant) and node.value in ("0.0.0.0", "::"):
            found.append(f"line {node.lineno}: {node.value!r}")
        address = node.args[0] if isinstance(node, ast.Call) and node.args else None
        host = address.elts[0] if isinstance(address, ast.Tuple) and address.elts else None
        if isinstance(host, ast.Constant) and host.value == "":  # bind(("", port)), HTTPServer(("", port), h)
            found.append(f"line {node.lineno}: ('', port)")
    return found


@pytest.mark.parametrize(
    ("code", "caught"),
    [
        ('server = ThreadingHTTPServer(("0.0.0.0", 8000), Handler)', True),
        ('sock.bind(("", 8000))', True),
        ('run(host="::")', True),
        ('cmd = ["dagster", "dev", "-h", "0.0.0.0"]', True),
        ('server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)', False),
        ('name = ""\npair = ("", 1)', False),
    ],
)
def test_the_bind_guard_catches_all_interface_binds(code: str, caught: bool) -> None:
    assert bool(binds_everywhere(code)) is caught


def test_no_project_code_binds_all_interfaces() -> None:
    files = [p for package in PACKAGES for p in sorted((PROJECT_ROOT / package).rglob("*.py"))]
    assert len(files) > 40
    offenders = {
        str(p.relative_to(PROJECT_ROOT)): where
        for p in files
        if (where := binds_everywhere(p.read_text(encoding="utf-8")))
    }
    assert offenders == {}
    for shell in sorted((PROJECT_ROOT / "scripts").glob("*.sh")):
        assert "0.0.0.0" not in shell.read_text(encoding="utf-8"), shell.name
