"""A fake Hugging Face Hub on 127.0.0.1: the API calls the pipeline and `datasets.load_dataset` make, served
from repos held in memory, so Hub references can be tested end to end without the internet.

A repo is a set of commits (each: path -> bytes) and branches pointing at them; `commit` adds a commit and
moves a branch, as a push to the Hub would. Answered (as the Hub does, with its `X-Error-Code` on errors):

    GET  /api/{models,datasets}/{repo}[/revision/{rev}]     repo info at a revision: its commit `sha`, files
    GET  /api/{models,datasets}/{repo}/tree/{rev}[/{path}]  files under a folder (`recursive`)
    POST /api/{models,datasets}/{repo}/paths-info/{rev}     files and folders at the given paths
    HEAD/GET /[datasets/]{repo}/resolve/{rev}/{path}        a file, with `X-Repo-Commit` and `ETag`

Every request is recorded in `requests` ("METHOD /path") so tests can say which calls were made.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

TYPES = {"models": "model", "datasets": "dataset"}  # URL segment -> repo type


@dataclass
class FakeRepo:
    """One repo: its commits (sha -> files) and branches (name -> sha)."""

    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)

    def sha(self, revision: str) -> str | None:
        """The commit a revision names: a branch, or a commit sha of this repo; None if neither."""
        if revision in self.branches:
            return self.branches[revision]
        return revision if revision in self.commits else None


class FakeHub:
    """The repos, the server thread and the request log; `url` is the endpoint (what HF_ENDPOINT takes)."""

    def __init__(self) -> None:
        self.repos: dict[tuple[str, str], FakeRepo] = {}
        self.requests: list[str] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> FakeHub:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def commit(self, repo_type: str, repo_id: str, files: dict[str, bytes], branch: str = "main") -> str:
        """Add a commit holding exactly `files` to a repo (created if new) and point `branch` at it; its sha."""
        repo = self.repos.setdefault((repo_type, repo_id), FakeRepo())
        digest = hashlib.sha1(repo_id.encode() + str(len(repo.commits)).encode())
        for path in sorted(files):
            digest.update(path.encode() + b"\0" + files[path])
        sha = digest.hexdigest()
        repo.commits[sha] = dict(files)
        repo.branches[branch] = sha
        return sha

    def calls(self, prefix: str) -> list[str]:
        """The recorded requests that start with `prefix`, e.g. "GET /api/datasets/"."""
        return [request for request in self.requests if request.startswith(prefix)]


def _entry(path: str, data: bytes | None) -> dict[str, Any]:
    """A tree entry as the Hub lists it: a file (with size and oid) or a folder."""
    if data is None:
        return {"type": "directory", "path": path, "oid": hashlib.sha1(path.encode()).hexdigest()}
    return {"type": "file", "path": path, "size": len(data), "oid": hashlib.sha1(data).hexdigest()}


def _folders(files: dict[str, bytes]) -> set[str]:
    return {"/".join(path.split("/")[:i]) for path in files for i in range(1, path.count("/") + 1)}


def _handler(hub: FakeHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_HEAD(self) -> None:
            self._answer("HEAD")

        def do_GET(self) -> None:
            self._answer("GET")

        def do_POST(self) -> None:
            self._answer("POST")

        def _answer(self, method: str) -> None:
            url = urlsplit(self.path)
            hub.requests.append(f"{method} {url.path}" + (f"?{url.query}" if url.query else ""))
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0)) if method == "POST" else b""
            parts = [unquote(part) for part in url.path.strip("/").split("/")]
            if parts[:1] == ["api"] and len(parts) >= 4 and parts[1] in TYPES:
                self._api(method, TYPES[parts[1]], "/".join(parts[2:4]), parts[4:], url.query, body)
            elif "resolve" in parts[2:4]:
                repo_type = "dataset" if parts[0] == "datasets" else "model"
                parts = parts[1:] if repo_type == "dataset" else parts
                self._file(method, repo_type, "/".join(parts[:2]), parts[3], "/".join(parts[4:]))
            else:
                self._error(404, None, "no such route in the fake Hub")

        def _api(self, method: str, repo_type: str, repo_id: str, rest: list[str], query: str, body: bytes) -> None:
            repo = hub.repos.get((repo_type, repo_id))
            if repo is None:
                return self._error(404, "RepoNotFound", f"Repository {repo_id} not found")
            action, revision, path = (rest[0], rest[1], "/".join(rest[2:])) if rest else ("revision", "main", "")
            sha = repo.sha(revision)
            if sha is None:
                return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
            files = repo.commits[sha]
            if action == "revision" and method == "GET":
                siblings = [{"rfilename": name} for name in sorted(files)]
                return self._json({"id": repo_id, "sha": sha, "private": False, "siblings": siblings, "tags": []})
            if action == "tree" and method == "GET":
                recursive = parse_qs(query).get("recursive", ["false"])[0].lower() == "true"
                prefix = f"{path}/" if path else ""
                if path and path not in _folders(files):
                    return self._error(404, "EntryNotFound", f"{path} does not exist at {revision}")
                below = {p: d for p, d in files.items() if p.startswith(prefix)}
                names = set(below) | {f for f in _folders(below) if f.startswith(prefix)}
                if not recursive:
                    names = {n for n in names if "/" not in n[len(prefix) :]}
                return self._json([_entry(n, files.get(n)) for n in sorted(names)])
            if action == "paths-info" and method == "POST":
                asked = parse_qs(body.decode()).get("paths", [])
                folders = _folders(files)
                found = [_entry(p, files.get(p)) for p in asked if p in files or p in folders]
                return self._json(found)
            self._error(404, None, f"the fake Hub does not answer {method} {action}")

        def _file(self, method: str, repo_type: str, repo_id: str, revision: str, path: str) -> None:
            repo = hub.repos.get((repo_type, repo_id))
            if repo is None:
                return self._error(404, "RepoNotFound", f"Repository {repo_id} not found")
            sha = repo.sha(revision)
            if sha is None:
                return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
            data = repo.commits[sha].get(path)
            if data is None:
                return self._error(404, "EntryNotFound", f"{path} does not exist at {revision}", sha)
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("ETag", f'"{hashlib.sha1(data).hexdigest()}"')
            self.send_header("X-Repo-Commit", sha)
            self.end_headers()
            if method == "GET":
                self.wfile.write(data)

        def _json(self, value: Any) -> None:
            data = json.dumps(value).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _error(self, status: int, code: str | None, message: str, sha: str | None = None) -> None:
            data = json.dumps({"error": message}).encode()
            self.send_response(status)
            if code is not None:
                self.send_header("X-Error-Code", code)
            self.send_header("X-Error-Message", message)
            if sha is not None:
                self.send_header("X-Repo-Commit", sha)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

    return Handler
