"""A small Hugging Face Hub look-alike for the tests: standard library only, on 127.0.0.1.

It implements what the real ``huggingface_hub`` client calls to create a repo, upload a folder (preupload +
NDJSON commit, every file ``regular`` so its bytes travel base64 inside the commit: with ``hf_xet`` installed
an ``lfs`` answer would send the client to Xet storage, which this server does not have), read repo info and
file listings, and download files. Each commit is a new immutable snapshot with its own sha; a branch moves to
it only once the whole commit has been received and checked, so nothing is ever half-published here.

Errors carry the headers the client maps to its exception classes: ``X-Error-Code: RepoNotFound`` (401),
``RevisionNotFound`` and ``EntryNotFound`` (404). Writes need ``Authorization: Bearer <token>`` with a token
the server was given; private repos need one for reads too.

Tests steer it through `HubServer`: `add_fault` makes matching requests fail (an HTTP status, or a dropped
connection), `log` records each request (method, path, status; never a header value).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import itertools
import json
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

GITATTRIBUTES = (
    b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n*.onnx filter=lfs diff=lfs merge=lfs -text\n"
)
REPO = r"(?P<repo>[\w.-]+/[\w.-]+)"
COMMIT_SHA = re.compile(r"^[0-9a-f]{40}$")


def git_blob_oid(data: bytes) -> str:
    """The git object id of a file, which the Hub uses as the ETag and ``oid`` of regular files."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass(frozen=True)
class Commit:
    sha: str
    parent: str | None
    files: dict[str, str]  # path -> blob oid
    title: str
    date: str


@dataclass
class Repo:
    repo_id: str
    private: bool
    refs: dict[str, str] = field(default_factory=dict)  # branch -> commit sha
    commits: dict[str, Commit] = field(default_factory=dict)


@dataclass
class Fault:
    """Requests whose method and path match fail: with `status`, or by closing the connection (status 0)."""

    method: str
    path: re.Pattern
    status: int
    times: int | None  # None: every time
    hits: int = 0


class HubState:
    """Repos, blobs, tokens, faults and the request log, shared by the handler threads under one lock."""

    def __init__(self, tokens: set[str]):
        self.lock = threading.Lock()
        # Requests being handled: a handler logs its request after the answer is sent, so a client can be
        # past a call before the log shows it (`HubServer.settled` waits for those).
        self.in_flight = 0
        self.idle = threading.Condition(self.lock)
        self.repos: dict[str, Repo] = {}
        self.blobs: dict[str, bytes] = {}
        self.tokens = set(tokens)
        self.faults: list[Fault] = []
        self.log: list[tuple[str, str, int]] = []
        self.errors: list[str] = []  # handler exceptions: bugs in this server, reported by the tests
        self._counter = itertools.count()

    def new_commit(self, repo: Repo, parent: str | None, files: dict[str, str], title: str) -> Commit:
        tree = "\n".join(f"{path} {oid}" for path, oid in sorted(files.items()))
        seed = f"{repo.repo_id}\n{parent}\n{tree}\n{title}\n{next(self._counter)}\n{time.time_ns()}"
        commit = Commit(
            sha=hashlib.sha1(seed.encode()).hexdigest(),
            parent=parent,
            files=dict(files),
            title=title,
            date=formatdate(usegmt=True),
        )
        repo.commits[commit.sha] = commit
        return commit

    def fault_for(self, method: str, path: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.method in (method, "*") and fault.path.search(path):
                    if fault.times is not None and fault.hits >= fault.times:
                        continue
                    fault.hits += 1
                    return fault
        return None


class HubError(Exception):
    """An error answer: status, the X-Error-Code the client maps to an exception class, and a message."""

    def __init__(self, status: int, message: str, code: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    # -- plumbing ----------------------------------------------------------------------------------------

    def log_message(self, format, *args):
        pass  # requests are recorded in HubState.log (method, path, status), never on stderr

    @property
    def state(self) -> HubState:
        return self.server.state

    @property
    def endpoint(self) -> str:
        return f"http://{self.headers.get('Host') or f'127.0.0.1:{self.server.server_port}'}"

    def do_GET(self):
        self._dispatch("GET")

    def do_HEAD(self):
        self._dispatch("HEAD")

    def do_POST(self):
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        path, query = unquote(url.path), parse_qs(url.query)
        status = 0
        with self.state.lock:
            self.state.in_flight += 1
        try:
            # Read the whole body first: an answer sent before it would desynchronise a kept-alive connection.
            self.body = self._read_body()
            fault = self.state.fault_for(method, path)
            if fault is not None:
                if fault.status == 0:  # the connection drops mid-request: no answer at all
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                raise HubError(fault.status, "injected fault")
            status = self._route(method, path, query)
        except HubError as err:
            status = err.status
            self._send_error(err, head=method == "HEAD")
        except (BrokenPipeError, ConnectionResetError):
            status = -1
            self.close_connection = True
        except Exception as err:  # a bug here: answer 500 and keep it for the test to report
            status = 500
            with self.state.lock:
                self.state.errors.append(f"{method} {path}: {err!r}")
            self._send_error(HubError(500, f"test hub bug: {err!r}"), head=method == "HEAD")
        finally:
            with self.state.lock:
                self.state.log.append((method, path, status))
                self.state.in_flight -= 1
                self.state.idle.notify_all()

    def _route(self, method: str, path: str, query: dict) -> int:
        routes = [
            ("POST", r"^/api/repos/create$", self._create_repo),
            ("POST", r"^/api/validate-yaml$", self._validate_yaml),
            ("POST", rf"^/api/models/{REPO}/preupload/(?P<rev>.+)$", self._preupload),
            ("POST", rf"^/api/models/{REPO}/commit/(?P<rev>.+)$", self._commit),
            ("POST", rf"^/api/models/{REPO}/branch/(?P<branch>.+)$", self._create_branch),
            ("POST", rf"^/api/models/{REPO}/paths-info/(?P<rev>.+)$", self._paths_info),
            ("GET", rf"^/api/models/{REPO}/tree/(?P<rev>[^/]+)(?:/(?P<sub>.*))?$", self._tree),
            ("GET", rf"^/api/models/{REPO}(?:/revision/(?P<rev>.+))?$", self._repo_info),
            ("GET", rf"^/{REPO}/resolve/(?P<rev>[^/]+)/(?P<file>.+)$", self._resolve),
            ("HEAD", rf"^/{REPO}/resolve/(?P<rev>[^/]+)/(?P<file>.+)$", self._resolve),
        ]
        for verb, pattern, handler in routes:
            match = re.match(pattern, path)
            if verb == method and match:
                return handler(method=method, query=query, **match.groupdict())
        raise HubError(404, f"no route for {method} {path}")

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if len(body) != length:  # the client went away mid-upload: nothing of it is used
            raise ConnectionResetError("request body cut short")
        return body

    def _json_body(self) -> dict:
        try:
            return json.loads(self.body or b"{}")
        except json.JSONDecodeError as err:
            raise HubError(400, f"body is not JSON: {err}") from None

    def _send(self, status: int, body: bytes = b"", headers: dict | None = None, head: bool = False) -> int:
        self.send_response(status)
        headers = {"Content-Type": "application/json", **(headers or {})}
        headers.setdefault("Content-Length", str(len(body)))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if not head:
            self.wfile.write(body)
        return status

    def _send_json(self, status: int, data, headers: dict | None = None) -> int:
        return self._send(status, json.dumps(data).encode(), headers)

    def _send_error(self, err: HubError, head: bool) -> None:
        headers = {"X-Error-Message": err.message, **err.headers}
        if err.code:
            headers["X-Error-Code"] = err.code
        self._send(err.status, json.dumps({"error": err.message}).encode(), headers, head=head)

    # -- auth and lookups ------------------------------------------------------------------------------------

    def _token(self) -> str | None:
        auth = self.headers.get("Authorization") or ""
        token = auth[len("Bearer ") :] if auth.startswith("Bearer ") else None
        return token if token in self.state.tokens else None

    def _require_write_token(self) -> None:
        if self._token() is None:
            raise HubError(401, "Invalid credentials in Authorization header")

    def _repo(self, repo_id: str) -> Repo:
        with self.state.lock:
            repo = self.state.repos.get(repo_id)
        if repo is None or (repo.private and self._token() is None):
            raise HubError(401, "Repository not found", "RepoNotFound")
        return repo

    def _commit_at(self, repo: Repo, rev: str) -> Commit:
        with self.state.lock:
            sha = repo.refs.get(rev) or (rev if rev in repo.commits else None)
            if sha is None and re.fullmatch(r"[0-9a-f]{7,39}", rev):  # a short sha, as in git
                found = [c for c in repo.commits if c.startswith(rev)]
                sha = found[0] if len(found) == 1 else None
            if sha is None:
                raise HubError(404, f"Invalid rev id: {rev}", "RevisionNotFound")
            return repo.commits[sha]

    def _file_entry(self, path: str, oid: str) -> dict:
        return {"type": "file", "oid": oid, "size": len(self.state.blobs[oid]), "path": path}

    @staticmethod
    def _folders(files) -> set[str]:
        return {"/".join(p.split("/")[:i]) for p in files for i in range(1, p.count("/") + 1)}

    @staticmethod
    def _folder_entry(path: str) -> dict:
        return {"type": "directory", "oid": hashlib.sha1(f"tree {path}".encode()).hexdigest(), "path": path}

    # -- endpoints -------------------------------------------------------------------------------------------

    def _create_repo(self, method, query):
        self._require_write_token()
        body = self._json_body()
        if body.get("type", "model") != "model":
            raise HubError(400, "this test hub only holds model repos")
        name, org = body.get("name"), body.get("organization")
        if not name or not re.fullmatch(r"[\w.-]+", name) or not org:
            raise HubError(400, f"invalid repo name {org}/{name}")
        repo_id = f"{org}/{name}"
        url = f"{self.endpoint}/{repo_id}"
        with self.state.lock:
            if repo_id in self.state.repos:
                return self._send_json(409, {"error": "You already created this model repo", "url": url})
            repo = Repo(repo_id, private=body.get("visibility") == "private" or bool(body.get("private")))
            oid = git_blob_oid(GITATTRIBUTES)
            self.state.blobs[oid] = GITATTRIBUTES
            repo.refs["main"] = self.state.new_commit(
                repo, None, {".gitattributes": oid}, "initial commit"
            ).sha
            self.state.repos[repo_id] = repo
        return self._send_json(200, {"url": url, "name": repo_id, "id": repo_id})

    def _validate_yaml(self, method, query):
        content = self._json_body().get("content", "")
        errors = []
        if content.startswith("---"):
            lines = content.splitlines()
            if "---" not in (line.rstrip() for line in lines[1:]):
                errors.append({"message": "metadata block opened with '---' is never closed"})
            elif "\t" in "\n".join(lines[1 : [line.rstrip() for line in lines[1:]].index("---") + 1]):
                errors.append({"message": "tabs are not allowed in YAML indentation"})
        if errors:
            return self._send_json(400, {"errors": errors, "warnings": []})
        return self._send_json(200, {"errors": [], "warnings": []})

    def _create_branch(self, method, query, repo, branch):
        self._require_write_token()
        repo_ = self._repo(repo)
        start = self._commit_at(repo_, self._json_body().get("startingPoint") or "main")
        with self.state.lock:
            if branch in repo_.refs:
                raise HubError(409, f"Reference already exists: refs/heads/{branch}")
            repo_.refs[branch] = start.sha
        return self._send_json(200, {})

    def _preupload(self, method, query, repo, rev):
        self._require_write_token()
        head = self._commit_at(self._repo(repo), rev)
        files = self._json_body().get("files", [])
        answer = [
            # Always "regular": the bytes come base64 inside the commit (see the module docstring).
            {
                "path": f["path"],
                "uploadMode": "regular",
                "shouldIgnore": False,
                "oid": head.files.get(f["path"]),
            }
            for f in files
        ]
        return self._send_json(200, {"files": answer, "commitOid": head.sha})

    def _commit(self, method, query, repo, rev):
        self._require_write_token()
        repo_ = self._repo(repo)
        if query.get("create_pr"):
            raise HubError(400, "pull requests are not supported by this test hub")
        self._commit_at(repo_, rev)  # the branch must exist (RevisionNotFound otherwise)
        lines = [line for line in self.body.split(b"\n") if line.strip()]
        try:
            items = [json.loads(line) for line in lines]
        except json.JSONDecodeError as err:
            raise HubError(400, f"commit payload is not NDJSON: {err}") from None
        if not items or items[0].get("key") != "header":
            raise HubError(400, "a commit starts with a header line")
        header = items[0]["value"]
        added: dict[str, bytes] = {}
        deleted: list[tuple[str, bool]] = []
        for item in items[1:]:
            key, value = item.get("key"), item.get("value") or {}
            if key == "file":
                if value.get("encoding") != "base64":
                    raise HubError(400, f"unsupported encoding {value.get('encoding')!r}")
                try:
                    added[value["path"]] = base64.b64decode(value["content"], validate=True)
                except (binascii.Error, KeyError) as err:
                    raise HubError(400, f"bad file line for {value.get('path')!r}: {err}") from None
            elif key in ("deletedFile", "deletedFolder"):
                deleted.append((value["path"].rstrip("/"), key == "deletedFolder"))
            else:  # lfsFile included: this server never answered "lfs", so no such file was uploaded
                raise HubError(400, f"unsupported commit operation {key!r}")
        with self.state.lock:  # check everything, then move the branch in one step
            head_sha = repo_.refs.get(rev)
            if head_sha is None:
                raise HubError(400, f"cannot commit to {rev!r}: not a branch")
            if header.get("parentCommit") and header["parentCommit"] != head_sha:
                raise HubError(412, f"parent commit {header['parentCommit']} is not the head of {rev}")
            files = dict(repo_.commits[head_sha].files)
            for path, is_folder in deleted:
                gone = [p for p in files if p == path or (is_folder and p.startswith(path + "/"))]
                if not gone:
                    raise HubError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
                for p in gone:
                    del files[p]
            for path, data in added.items():
                oid = git_blob_oid(data)
                self.state.blobs[oid] = data
                files[path] = oid
            commit = self.state.new_commit(repo_, head_sha, files, header.get("summary") or "commit")
            repo_.refs[rev] = commit.sha
        return self._send_json(
            200,
            {
                "success": True,
                "commitOid": commit.sha,
                "commitUrl": f"{self.endpoint}/{repo}/commit/{commit.sha}",
            },
        )

    def _repo_info(self, method, query, repo, rev=None):
        repo_ = self._repo(repo)
        commit = self._commit_at(repo_, rev or "main")
        info = {
            "_id": hashlib.sha1(repo.encode()).hexdigest()[:24],
            "id": repo,
            "modelId": repo,
            "author": repo.split("/")[0],
            "sha": commit.sha,
            "lastModified": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
            "private": repo_.private,
            "disabled": False,
            "gated": False,
            "tags": [],
            "siblings": [{"rfilename": path} for path in sorted(commit.files)],
        }
        return self._send_json(200, info)

    def _tree(self, method, query, repo, rev, sub=None):
        commit = self._commit_at(self._repo(repo), rev)
        recursive = (query.get("recursive") or ["False"])[0].lower() == "true"
        prefix = sub.strip("/") + "/" if sub else ""
        folders = self._folders(commit.files)
        if sub and sub.strip("/") not in folders:
            raise HubError(
                404, f"{sub} does not exist on {rev}", "EntryNotFound", {"X-Repo-Commit": commit.sha}
            )
        entries = []
        for path in sorted(folders):
            if path.startswith(prefix) and (recursive or "/" not in path[len(prefix) :]):
                entries.append(self._folder_entry(path))
        for path, oid in sorted(commit.files.items()):
            if path.startswith(prefix) and (recursive or "/" not in path[len(prefix) :]):
                entries.append(self._file_entry(path, oid))
        return self._send_json(200, entries)

    def _paths_info(self, method, query, repo, rev):
        commit = self._commit_at(self._repo(repo), rev)
        form = parse_qs(self.body.decode())
        folders = self._folders(commit.files)
        entries = []
        for path in form.get("paths", []):
            path = path.strip("/")
            if path in commit.files:
                entries.append(self._file_entry(path, commit.files[path]))
            elif path in folders:
                entries.append(self._folder_entry(path))
        return self._send_json(200, entries)

    def _resolve(self, method, query, repo, rev, file):
        commit = self._commit_at(self._repo(repo), rev)
        oid = commit.files.get(file)
        if oid is None:
            raise HubError(404, "Entry not found", "EntryNotFound", {"X-Repo-Commit": commit.sha})
        data = self.state.blobs[oid]
        headers = {
            "Content-Type": "application/octet-stream",
            "X-Repo-Commit": commit.sha,
            "ETag": f'"{oid}"',
            "Accept-Ranges": "bytes",
        }
        status, body = 200, data
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range") or "")
        if match:
            start = int(match.group(1))
            end = int(match.group(2)) if match.group(2) else len(data) - 1
            if start >= len(data) or end < start:
                raise HubError(
                    416, "Range Not Satisfiable", headers={"Content-Range": f"bytes */{len(data)}"}
                )
            end = min(end, len(data) - 1)
            status, body = 206, data[start : end + 1]
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
        return self._send(status, body, headers, head=method == "HEAD")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: HubState


class HubServer:
    """The server bound at construction (so its port is known early) and served from `start()`.

    Until `start()` the socket is bound but not listening, so connections to it are refused.
    """

    def __init__(self, tokens: set[str], host: str = "127.0.0.1", port: int = 0):
        self._server = _Server((host, port), Handler, bind_and_activate=False)
        self._server.allow_reuse_address = True
        self._server.server_bind()
        self._server.state = HubState(tokens)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def state(self) -> HubState:
        return self._server.state

    @property
    def log(self) -> list[tuple[str, str, int]]:
        return self.state.log

    def settled(self, timeout: float = 10.0) -> list[tuple[str, str, int]]:
        """The request log once no request is being handled (each is logged after its answer is sent)."""
        with self.state.idle:
            if not self.state.idle.wait_for(lambda: self.state.in_flight == 0, timeout):
                raise TimeoutError(f"the test hub still handles {self.state.in_flight} request(s)")
            return list(self.state.log)

    def start(self) -> HubServer:
        if self._thread is None:
            self._server.server_activate()
            self._thread = threading.Thread(target=self._server.serve_forever, name="hub-server", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()

    def add_fault(self, method: str, path_pattern: str, status: int = 500, times: int | None = None) -> Fault:
        """Make matching requests fail with `status` (0: the connection is dropped without an answer)."""
        fault = Fault(method, re.compile(path_pattern), status, times)
        with self.state.lock:
            self.state.faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self.state.lock:
            self.state.faults.clear()

    def head(self, repo_id: str, branch: str = "main") -> str:
        """The commit sha a branch points at."""
        with self.state.lock:
            return self.state.repos[repo_id].refs[branch]

    def files(self, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        """The files of a repo at a branch or commit, as bytes."""
        with self.state.lock:
            repo = self.state.repos[repo_id]
            commit = repo.commits[repo.refs.get(revision, revision)]
            return {path: self.state.blobs[oid] for path, oid in commit.files.items()}

    def commits(self, repo_id: str) -> list[str]:
        with self.state.lock:
            return list(self.state.repos[repo_id].commits)

    def tamper(self, repo_id: str, path: str, data: bytes, branch: str = "main") -> str:
        """Commit new bytes for one file straight into a branch (a partial publish, as if interrupted)."""
        with self.state.lock:
            repo = self.state.repos[repo_id]
            files = dict(repo.commits[repo.refs[branch]].files)
            oid = git_blob_oid(data)
            self.state.blobs[oid] = data
            files[path] = oid
            commit = self.state.new_commit(repo, repo.refs[branch], files, f"update {path}")
            repo.refs[branch] = commit.sha
            return commit.sha
