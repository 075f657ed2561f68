"""Every notebook in notebooks/ in a real browser, one test each: JupyterLab on 127.0.0.1, headless Chromium
through Playwright, Run All at the notebook's default (smoke) scale, every code cell executed, no error output,
and at least one figure rendered where the notebook draws any.

Needs Debian's chromium at /usr/bin/chromium (``make test`` installs it). The notebook is opened from a
copy in a temporary folder, so JupyterLab's autosave cannot change the tracked file.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]
RUN_TIMEOUT_S = 900

pytestmark = pytest.mark.browser


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class JupyterLab:
    """A JupyterLab server of our own on 127.0.0.1, with its config, runtime and workspace dirs in ``root``."""

    def __init__(self, root: Path):
        self.root, self.port, self.token = root, free_port(), secrets.token_hex(16)
        self.url = f"http://127.0.0.1:{self.port}"
        home = root / ".jupyter-home"
        env = {**os.environ, "JUPYTER_CONFIG_DIR": str(home / "config"), "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
               "OMP_NUM_THREADS": "1"}
        self.log = open(root / "jupyterlab.log", "w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--allow-root", "--ServerApp.ip=127.0.0.1",
             f"--ServerApp.port={self.port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={self.token}",
             f"--ServerApp.root_dir={root}", f"--LabApp.workspaces_dir={home / 'workspaces'}",
             f"--LabApp.user_settings_dir={home / 'settings'}"],
            stdout=self.log, stderr=subprocess.STDOUT, env=env)

    def api(self, path: str):
        request = urllib.request.Request(f"{self.url}/api/{path}", headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.load(response)

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"JupyterLab exited: {(self.root / 'jupyterlab.log').read_text()[-2000:]}")
            try:
                self.api("status")
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"JupyterLab did not answer within {timeout} s")
                time.sleep(0.5)

    def kernels_idle(self) -> bool:
        try:
            kernels = self.api("kernels")
        except urllib.error.HTTPError as error:
            # jupyter_server lists a kernel the moment jupyter_client registers it, before it stamps
            # ``last_activity``; a listing in that gap fails with 500 (isoformat of None). It means "starting".
            if error.code != 500:
                raise
            return False
        return bool(kernels) and all(k["execution_state"] == "idle" for k in kernels)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


def run_all_in_browser(notebook: Path, workdir: Path) -> dict:
    """Open ``notebook`` (a copy in ``workdir``) in JupyterLab, Run All, wait until every cell has run.
    Returns the counts of code cells, executed cells, error outputs and rendered images."""
    from playwright.sync_api import sync_playwright

    shutil.copy(notebook, workdir / notebook.name)
    lab = JupyterLab(workdir)
    try:
        lab.wait_ready()
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{lab.url}/lab/tree/{notebook.name}?token={lab.token}")
            page.locator(".jp-Notebook .jp-CodeCell").first.wait_for(timeout=120_000)
            deadline = time.monotonic() + 120
            while not lab.kernels_idle():   # the notebook's kernel has started
                assert time.monotonic() < deadline, "the notebook's kernel did not start within 120 s"
                time.sleep(0.5)
            page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
            page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()

            prompts = page.locator(".jp-Notebook .jp-CodeCell .jp-InputPrompt")
            deadline = time.monotonic() + RUN_TIMEOUT_S
            while True:
                # Run All marks every queued cell "[*]:"; the run is over when none is left, at least one cell
                # has its "[n]:" and the kernel is idle (after an error the rest of the queue is cleared).
                texts = prompts.all_inner_texts()
                if (not any("*" in t for t in texts) and any(c.isdigit() for t in texts for c in t)
                        and lab.kernels_idle()):
                    break
                assert time.monotonic() < deadline, f"Run All did not finish in {RUN_TIMEOUT_S} s: {texts}"
                time.sleep(1)
            page.screenshot(path=str(workdir / "screenshot.png"), full_page=True)
            images = page.locator(".jp-OutputArea-output img").count()
            # Error outputs render like stderr; the saved notebook tells them apart exactly.
            saved = workdir / notebook.name
            before = saved.stat().st_mtime_ns
            page.locator(".jp-Notebook").first.click()
            page.keyboard.press("Control+s")
            while saved.stat().st_mtime_ns == before:
                assert time.monotonic() < deadline, "the notebook was not saved"
                time.sleep(0.5)
            browser.close()
    finally:
        lab.stop()
    cells = [c for c in json.loads(saved.read_text())["cells"] if c["cell_type"] == "code"]
    return {"code_cells": len(cells),
            "executed": sum(c["execution_count"] is not None for c in cells),
            "errors": [f"{o['ename']}: {o['evalue']}" for c in cells for o in c["outputs"]
                       if o["output_type"] == "error"],
            "images": images}


def draws_figures(notebook: Path) -> bool:
    """Whether a code cell of the notebook plots (matplotlib, seaborn or the results API's figure)."""
    cells = json.loads(notebook.read_text())["cells"]
    code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    return any(marker in code for marker in ("plt.", "sns.", ".figure(", "plot("))


def test_every_notebook_is_tested():
    assert NOTEBOOKS, f"no notebooks in {REPO / 'notebooks'}"


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian chromium: apt-get install -y chromium "
                                                        "(make test installs it)")
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_in_jupyterlab(notebook, tmp_path):
    result = run_all_in_browser(notebook, tmp_path)
    assert result["errors"] == [], f"error output in the browser (screenshot {tmp_path / 'screenshot.png'})"
    assert result["executed"] == result["code_cells"] > 0
    if draws_figures(notebook):
        assert result["images"] >= 1, f"no figure rendered (screenshot {tmp_path / 'screenshot.png'})"
