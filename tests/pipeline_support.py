"""Helpers for the pipeline tests: a project in tmp_path, landing files, a webhook receiver."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd

from orchestration.definitions import build_definitions
from orchestration.instance import PROJECT_ROOT
from orchestration.runner import run_landed_batches
from resources.alerts import Alert, JsonlAlertLog
from resources.study import StudyConfig, load_study
from resources.warehouse import Warehouse, WarehouseResource


@dataclass
class Project:
    """A study set-up in tmp_path: data folder, Dagster instance, sensor cursors."""

    data: Path
    studies: list[StudyConfig]
    instance: dg.DagsterInstance
    cursors: dict[str, str | None] = field(default_factory=dict)

    @property
    def defs(self) -> dg.Definitions:
        return build_definitions(studies=self.studies, data_dir=self.data)

    @property
    def warehouse(self) -> Warehouse:
        """The pipeline's warehouse: the data folder's DuckDB file, or ASSIMILATE_WAREHOUSE_URL's database."""
        return WarehouseResource.for_data_dir(self.data).open()

    def landing(self, study: str) -> Path:
        folder = self.data / "landing" / study
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def tick(self) -> list[dg.ExecuteInProcessResult]:
        """One landing-sensor tick per study, and every run it requested."""
        return run_landed_batches(self.defs, self.instance, self.studies, cursors=self.cursors)

    def steps(self, study: str) -> pd.DataFrame:
        return self.warehouse.read_table(study, "posterior_steps")

    def alerts(self) -> list[Alert]:
        return JsonlAlertLog(self.data / "alerts.jsonl").alerts()


def example_study(name: str, **changes: Any) -> StudyConfig:
    study = load_study(PROJECT_ROOT / "studies" / f"{name}.yaml")
    return study.model_copy(update=changes) if changes else study


def write_batch(folder: Path, label: str, frame: pd.DataFrame, *, fmt: str = "csv") -> Path:
    path = folder / f"{label}.{fmt}"
    if fmt == "csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)
    return path


def ab_batch(seed: int, *, n: int = 300, tau: float = 0.5) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    d = rng.binomial(1, 0.5, size=n)
    x = rng.standard_normal(n)
    y = tau * d + 0.2 * x + rng.normal(0, 0.3, size=n)
    return pd.DataFrame({"unit_id": [f"s{seed}-{i}" for i in range(n)], "x": x, "treatment": d, "outcome": y})


class _Receiver(BaseHTTPRequestHandler):
    received: list[dict[str, Any]]

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        self.server.received.append(json.loads(self.rfile.read(length)))  # type: ignore[attr-defined]
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: Any) -> None:
        return


@contextmanager
def webhook_receiver() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A real HTTP server on 127.0.0.1 that records every POSTed JSON body."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    server.received = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", server.received  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        server.server_close()
