"""CPU instructions per one-line ingest POST, counted by valgrind's callgrind: a measure the machine's other work
does not disturb, for comparing two commits when wall-clock runs are too noisy.

    python bench/instructions.py [TREE ...] [--posts 1000] [--repeat 2]

Each TREE is a directory holding server.py and sentra/ (a checkout, or `git archive REV | tar -x -C DIR`); the
default is this checkout. A server under callgrind takes N and then, started afresh, 2N one-line POSTs on one
keep-alive connection; the difference of the two totals over N is what one POST costs, start-up and shutdown
cancelling out. Needs valgrind (Debian package valgrind).
"""

from __future__ import annotations

import argparse
import http.client
import json
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jwt

sys.path.insert(0, str(Path(__file__).resolve().parent))

from servers import free_port

ROOT = Path(__file__).resolve().parent.parent
# A line as agents send them: a source and a small fields object.
LINE = {
    "message": "GET /api/v1/items?page=2 200 12.3ms",
    "level": "INFO",
    "source": "web",
    "fields": {"route": "/api/v1/items", "status": 200},
}
START_TIMEOUT = 120.0  # seconds for a server under valgrind to answer /healthz


def total_instructions(tree: Path, posts: int) -> int:
    """Instructions a server in `tree` executes from start to exit, taking `posts` one-line POSTs."""
    with tempfile.TemporaryDirectory() as tmp:
        work, secret, port = Path(tmp), secrets.token_urlsafe(32), free_port()
        (work / "sentra.toml").write_text(f'[auth]\njwt_secret = "{secret}"\n')
        out = work / "callgrind.out"
        serve = [str(tree / "server.py"), "--port", str(port), "--db", str(work / "sentra.db")]
        grind = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
        server = subprocess.Popen(
            [*grind, sys.executable, *serve, "--config", str(work / "sentra.toml")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=work,
        )
        try:
            conn = _connect(port)
            token = jwt.encode({"sub": "bench", "iat": int(time.time()), "jti": "bench"}, secret, algorithm="HS256")
            headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
            body = json.dumps(LINE).encode()
            for _ in range(posts):
                conn.request("POST", "/api/agents/instructions/logs", body, headers)
                answer = conn.getresponse()
                answer.read()
                if answer.status != 200:
                    raise RuntimeError(f"POST answered {answer.status}")
            conn.close()
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(START_TIMEOUT)
        found = re.search(r"^summary: (\d+)", out.read_text(), re.MULTILINE)
        if found is None:
            raise RuntimeError("callgrind wrote no summary")
        return int(found[1])


def _connect(port: int) -> http.client.HTTPConnection:
    """A keep-alive connection to a server once it answers /healthz."""
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            conn.request("GET", "/healthz")
            conn.getresponse().read()
            return conn
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def per_post(tree: Path, posts: int) -> float:
    """Instructions one POST costs in `tree`."""
    return (total_instructions(tree, 2 * posts) - total_instructions(tree, posts)) / posts


def main() -> int:
    """Print instructions per POST for each tree, `--repeat` times each."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trees", nargs="*", type=Path, default=[ROOT])
    parser.add_argument("--posts", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    for tree in args.trees:
        counts = [per_post(tree, args.posts) for _ in range(args.repeat)]
        print(f"{tree}: " + ", ".join(f"{count:,.0f}" for count in counts) + " instructions per one-line POST")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
