"""Sentra installed three ways: one file (sentra.pyz), a wheel in a fresh venv, a checkout; each serves the viewer."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import jwt
import pytest
from conftest import SECRET, RunningServer, make_token, open_stream
from otlp_bodies import GZIP, PROTOBUF, agent_json, gzipped, protobuf_body
from processes import ROOT, ServerProcess, write_config

import sentra

# Paths whose answers must not depend on how Sentra was installed.
VIEWER_PATHS = ("/", "/index.html", "/app.js", "/sentra.js", "/style.css", "/favicon.svg", "/no-such-file.js")
VIEWER_HEADERS = ("Content-Type", "Content-Security-Policy", "X-Content-Type-Options", "X-Frame-Options", "Etag")
MODULE_SCRIPT = re.compile(r'<script type="module" src="([^"]+)"')


def viewer_file_names() -> set[str]:
    """Where each file of static/ belongs in a wheel or in the pyz."""
    return {f"sentra/static/{path.name}" for path in (ROOT / "static").iterdir() if path.is_file()}


def plain_env() -> dict[str, str]:
    """This environment without anything that would lead Python to the checkout."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")} | {"PYTHONUNBUFFERED": "1"}


@contextmanager
def launched(command: list[str], db: Path, config: Path, cwd: Path) -> Iterator[str]:
    """Start `command --port P --db DB --config C` in `cwd`, yield its URL once it says "Sentra listening", then
    SIGTERM it."""
    server = ServerProcess(db, config=config, cwd=cwd, command=command, env=plain_env()).start()
    try:
        yield server.url
    finally:
        code = server.terminate()
    assert code == 0, server.stderr


async def viewer_answers(url: str) -> dict[str, tuple[int, dict[str, str | None], str]]:
    """For each viewer path: status, the headers that matter, and a digest of the body."""
    answers = {}
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        for path in VIEWER_PATHS:
            response = await client.get(path)
            headers = {name: response.headers.get(name) for name in VIEWER_HEADERS}
            answers[path] = (response.status_code, headers, hashlib.sha256(response.content).hexdigest())
    return answers


def index_and_module(answers: dict[str, tuple[int, dict[str, str | None], str]]) -> None:
    """The index page and its JS module came back as the viewer's own files, with their types."""
    index_status, index_headers, index_digest = answers["/"]
    assert index_status == 200 and index_headers["Content-Type"] == "text/html; charset=utf-8"
    assert index_digest == hashlib.sha256((ROOT / "static" / "index.html").read_bytes()).hexdigest()
    module = MODULE_SCRIPT.search((ROOT / "static" / "index.html").read_text())
    assert module is not None and module.group(1) == "/app.js"
    module_status, module_headers, module_digest = answers["/app.js"]
    assert module_status == 200 and module_headers["Content-Type"] == "text/javascript; charset=utf-8"
    assert module_digest == hashlib.sha256((ROOT / "static" / "app.js").read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def pyz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """sentra.pyz as `python -m sentra.build` writes it, then copied alone into an empty directory."""
    workdir = tmp_path_factory.mktemp("build")
    env = plain_env() | {"PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-m", "sentra.build"], cwd=workdir, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    alone = tmp_path_factory.mktemp("alone")
    shutil.copy(workdir / "dist" / "sentra.pyz", alone / "sentra.pyz")
    return alone / "sentra.pyz"


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A sentra.toml with the tests' HS256 secret, away from where the server runs."""
    directory = tmp_path / "config"
    directory.mkdir()
    return write_config(directory)


def pyz_command(pyz: Path, *args: str) -> list[str]:
    """`python3 -I -S sentra.pyz ARGS`: isolated, and without site-packages, so only the pyz can supply imports."""
    return [sys.executable, "-I", "-S", str(pyz), *args]


@pytest.mark.slow  # builds sentra.pyz, runs it as a child
async def test_pyz_alone_in_an_empty_directory_takes_a_line_streams_it_and_serves_the_viewer(
    pyz: Path, config: Path, tmp_path: Path, server: RunningServer
) -> None:
    db = tmp_path / "pyz.db"
    with launched(pyz_command(pyz), db, config, pyz.parent) as url:
        headers = {"Authorization": f"Bearer {make_token('alice')}"}
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=10) as client:
            posted = await client.post("/api/agents/pyz-1/logs", json={"message": "hello from one file"})
            assert posted.json() == {"accepted": 1, "first_seq": 1, "last_seq": 1}
            async with open_stream(client, "/api/agents/pyz-1/logs/stream") as stream:
                event = await stream.next()
                assert event is not None and event.json()["logs"] == "hello from one file\n"
            sentra_js = await client.get("/sentra.js")
            assert sentra_js.content == (ROOT / "static" / "sentra.js").read_bytes()
            # OpenTelemetry logs in, decoded by protobuf's pure-Python implementation (the pyz has no compiled code).
            otlp = {**PROTOBUF, **GZIP}
            assert (await client.post("/v1/logs", content=gzipped(protobuf_body("pyz-2", 2)), headers=otlp)).is_success
            assert (await client.post("/v1/logs", json=agent_json("pyz-2", "three"))).is_success
            lines = (await client.get("/api/agents/pyz-2/logs")).json()["lines"]
            assert [line["message"] for line in lines] == ["record 1", "record 2", "three"]
        answers = await viewer_answers(url)
    index_and_module(answers)
    assert answers == await viewer_answers(server.url), "the pyz serves the viewer unlike a checkout"
    assert [path.name for path in pyz.parent.iterdir()] == ["sentra.pyz"]
    assert viewer_file_names() <= set(zipfile.ZipFile(pyz).namelist())
    assert not [name for name in zipfile.ZipFile(pyz).namelist() if name.startswith("uvloop/")], "compiled only"


@pytest.mark.slow  # builds sentra.pyz, runs it as a child
def test_pyz_runs_token_create_run_and_tail_like_the_sentra_command(pyz: Path, config: Path, tmp_path: Path) -> None:
    db = tmp_path / "pyz.db"

    def pyz_run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            pyz_command(pyz, *args), cwd=pyz.parent, env=plain_env() | (env or {}), capture_output=True, text=True,
            timeout=60,
        )  # fmt: skip

    version = pyz_run("--version")
    assert version.stdout.strip() == f"sentra {sentra.__version__}"
    created = pyz_run("token", "create", "--sub", "carol", "--config", str(config), "--db", str(db))
    assert created.returncode == 0, created.stderr
    assert jwt.decode(created.stdout.strip(), SECRET, algorithms=["HS256"])["sub"] == "carol"
    with launched(pyz_command(pyz), db, config, pyz.parent) as url:
        env = {"SENTRA_URL": url, "SENTRA_TOKEN": created.stdout.strip()}
        ran = pyz_run("run", "--agent", "job-1", "--", sys.executable, "-c", "print('built in one file')", env=env)
        assert (ran.returncode, ran.stdout) == (0, "built in one file\n"), ran.stderr
        tailed = pyz_run("tail", "job-1", env=env)
        assert tailed.returncode == 0, tailed.stderr
        # HH:MM:SS.mmm LEVEL source message
        assert [line.split(None, 2)[2] for line in tailed.stdout.splitlines()] == ["stdout built in one file"]


@pytest.mark.slow  # builds sentra.pyz, runs it as a child
def test_pyz_without_the_crypto_backend_refuses_rs256_at_start_in_one_line(pyz: Path, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    pem = tmp_path / "idp.pem"
    pem.write_bytes(key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    rs256 = write_config(tmp_path, auth={"algorithm": "RS256", "public_key_file": str(pem), "jwt_secret": ""})
    args = pyz_command(pyz, "--port", "0", "--db", str(tmp_path / "rs.db"), "--config", str(rs256))
    done = subprocess.run(args, cwd=pyz.parent, capture_output=True, text=True, timeout=30)
    assert not done.stdout.startswith("Sentra listening"), "the pyz started with RS256 and no way to check a token"
    assert (done.returncode, done.stdout) == (2, "")
    err = done.stderr
    assert len(err.splitlines()) == 1 and "cryptography" in err and "RS256" in err


@pytest.mark.slow  # builds sentra.pyz, runs it as a child
def test_pyz_refuses_postgresql_and_redis_settings_in_one_line(pyz: Path, tmp_path: Path) -> None:
    scaled = write_config(tmp_path, storage={"url": "postgresql://sentra@127.0.0.1:1/sentra"})
    done = subprocess.run(
        pyz_command(pyz, "--port", "0", "--config", str(scaled)),
        cwd=pyz.parent,
        env=plain_env(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == "sentra: storage.url needs the Python package asyncpg: pip install 'sentra[scale]'\n"


@pytest.mark.slow  # builds a wheel, installs it in a venv
async def test_wheel_in_a_fresh_venv_serves_the_viewer_from_any_directory(
    tmp_path: Path, config: Path, server: RunningServer
) -> None:
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for name in ("sentra", "static"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    wheels = tmp_path / "wheels"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    built = subprocess.run(
        [*pip, "wheel", str(source), "--no-deps", "--no-build-isolation", "--no-index", "-w", str(wheels)],
        env=plain_env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert built.returncode == 0, built.stdout + built.stderr
    [wheel] = wheels.glob("sentra-*.whl")
    assert viewer_file_names() <= set(zipfile.ZipFile(wheel).namelist())

    venv = tmp_path / "venv"
    # The system site-packages give the venv Sentra's dependencies without a network; Sentra comes from the wheel.
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    installed = subprocess.run(
        [*pip, "--python", str(python), "install", "--no-deps", "--no-index", "--ignore-installed", str(wheel)],
        env=plain_env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stdout + installed.stderr

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = subprocess.run(
        [str(python), "-c", "import sentra; print(sentra.__file__)"], cwd=elsewhere, env=plain_env(),
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert Path(where.stdout.strip()).is_relative_to(venv), where.stdout + where.stderr
    # Once installed, the wheel no longer needs the source it was built from.
    shutil.rmtree(source)
    db = elsewhere / "sentra.db"
    with launched([str(venv / "bin" / "sentra"), "serve"], db, config, elsewhere) as url:
        answers = await viewer_answers(url)
    index_and_module(answers)
    assert answers == await viewer_answers(server.url), "the wheel serves the viewer unlike a checkout"


# ---- the viewer's files, as a checkout serves them (the pyz and the wheel are compared with this) ----------------


async def raw_get(port: int, target: str, headers: str = "") -> tuple[int, dict[str, str], bytes]:
    """GET `target` exactly as written (no client normalising ".." away); status, headers, body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{headers}\r\n".encode())
    response = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    head, _, body = response.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    fields = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), fields, body


@pytest.mark.parametrize(
    "target",
    [
        "/../pyproject.toml",
        "/%2e%2e/pyproject.toml",
        "/%2E%2E%2Fpyproject.toml",
        "/..%5cpyproject.toml",
        "//etc/passwd",
        "/%2fetc%2fpasswd",
        "/index.html%00.js",
        "/./index.html",
        "/.gitignore",
        "/static/",
    ],
)
async def test_viewer_serves_nothing_outside_its_files(server: RunningServer, target: str) -> None:
    status, headers, body = await raw_get(server.port, target)
    assert (status, headers["content-type"]) == (404, "application/json; charset=utf-8")
    assert json.loads(body)["error"]["code"] == "not_found"
    assert headers["x-content-type-options"] == "nosniff"


async def test_viewer_file_is_revalidated_by_etag_and_head_sends_its_headers_only(server: RunningServer) -> None:
    status, headers, body = await raw_get(server.port, "/sentra.js")
    assert (status, body) == (200, (ROOT / "static" / "sentra.js").read_bytes())
    assert headers["cache-control"] == "no-cache" and headers["etag"]
    status, _, body = await raw_get(server.port, "/sentra.js", f"If-None-Match: {headers['etag']}\r\n")
    assert (status, body) == (304, b"")
    async with server.client(None) as client:
        head = await client.head("/sentra.js", headers={"Accept-Encoding": "identity"})  # as raw_get asks
    assert head.status_code == 200 and head.content == b""
    assert int(head.headers["content-length"]) == len((ROOT / "static" / "sentra.js").read_bytes())
    assert head.headers["etag"] == headers["etag"]
