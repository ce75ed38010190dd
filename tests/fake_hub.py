"""A local stand-in for the Hugging Face Hub, enough for ``huggingface_hub.snapshot_download``.

It serves model repositories from local directories on 127.0.0.1 (threaded ``http.server``):

- ``GET /api/models/{org}/{name}/revision/{rev}``: repo info with the commit ``sha`` and the file
  list (``siblings``);
- ``GET /api/models/{org}/{name}/tree/{rev}``: the file list with sizes and blob ids, one page
  (no ``Link`` header, so the client does not paginate);
- ``HEAD``/``GET /{org}/{name}/resolve/{rev}/{path}``: file metadata in ``X-Repo-Commit``, ``ETag``
  and ``Content-Length`` headers, and the bytes. No ``X-Xet-Hash`` header and no ``xetHash`` in the
  tree, so the client uses plain HTTP rather than the Xet protocol.
- Large binary files (``LFS_SUFFIXES``: GGUF, safetensors) are served as the Hub serves Git LFS
  files: the tree lists them with an ``lfs`` entry (sha256, size), and ``resolve`` answers
  ``302`` to a second server on another port (the "CDN", another origin, so the client does not
  follow the redirect of its HEAD request) with the file's sha256 in ``X-Linked-Etag`` and its size
  in ``X-Linked-Size``; the client then downloads the bytes from the CDN address.

Unknown repositories answer 404 with ``X-Error-Code: RepoNotFound``, as the real Hub does, so the
client raises ``RepositoryNotFoundError``. Every request path is recorded in ``requests`` (the
CDN's with a ``CDN`` prefix).

    with FakeHub({"org/tiny": Path("dir")}) as hub:
        env["HF_ENDPOINT"] = hub.url
"""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit


LFS_SUFFIXES = (".gguf", ".safetensors")


def _is_lfs(path: str) -> bool:
    return path.endswith(LFS_SUFFIXES)


class _Repo:
    """A directory's files as a Hub repo at one commit (its sha is derived from the content)."""

    def __init__(self, root: Path) -> None:
        self.files = {p.relative_to(root).as_posix(): p.read_bytes()
                      for p in sorted(root.rglob("*")) if p.is_file()}
        self.sha256 = {path: hashlib.sha256(data).hexdigest() for path, data in self.files.items() if _is_lfs(path)}
        digest = hashlib.sha1()
        for path, data in self.files.items():
            digest.update(path.encode() + b"\0" + hashlib.sha1(data).digest())
        self.sha = digest.hexdigest()

    def knows_revision(self, rev: str) -> bool:
        return rev in ("main", self.sha)


class FakeHub:
    """Serve ``repos`` ({"org/name": directory}) until ``close()`` (or the end of a ``with``)."""

    def __init__(self, repos: dict[str, Path]) -> None:
        self.repos = {repo_id: _Repo(Path(root)) for repo_id, root in repos.items()}
        self.requests: list[str] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                hub._answer(self, body=True)

            def do_HEAD(self) -> None:
                hub._answer(self, body=False)

            def log_message(self, *args) -> None:  # keep test output clean
                pass

        class CdnHandler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                hub._answer_cdn(self, body=True)

            def do_HEAD(self) -> None:
                hub._answer_cdn(self, body=False)

            def log_message(self, *args) -> None:
                pass

        self._servers = []
        for handler in (Handler, CdnHandler):
            server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
            server.daemon_threads = True
            threading.Thread(target=server.serve_forever, daemon=True).start()
            self._servers.append(server)
        self.url, self.cdn_url = (f"http://127.0.0.1:{s.server_address[1]}" for s in self._servers)

    def close(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()

    def __enter__(self) -> FakeHub:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- request handling -------------------------------------------------------------------

    def _answer(self, h: BaseHTTPRequestHandler, body: bool) -> None:
        path = unquote(urlsplit(h.path).path)
        self.requests.append(f"{h.command} {path}")
        parts = path.strip("/").split("/")
        if parts[:2] == ["api", "models"] and len(parts) >= 6 and parts[4] in ("revision", "tree"):
            repo_id, kind, rev = "/".join(parts[2:4]), parts[4], parts[5]
            repo = self._find(h, repo_id, rev, body)
            if repo is None:
                return
            if kind == "revision":
                info = {"id": repo_id, "modelId": repo_id, "sha": repo.sha, "private": False,
                        "siblings": [{"rfilename": p} for p in repo.files]}
            else:
                info = [{"type": "file", "path": p, "size": len(data), "oid": hashlib.sha1(data).hexdigest()}
                        for p, data in repo.files.items()]
                for entry in info:
                    if entry["path"] in repo.sha256:
                        entry["lfs"] = {"oid": repo.sha256[entry["path"]], "size": entry["size"], "pointerSize": 134}
            self._send(h, 200, json.dumps(info).encode(), {"Content-Type": "application/json"}, body)
        elif len(parts) >= 5 and parts[2] == "resolve":
            repo_id, rev, file_path = "/".join(parts[:2]), parts[3], "/".join(parts[4:])
            repo = self._find(h, repo_id, rev, body)
            if repo is None:
                return
            if file_path not in repo.files:
                self._send(h, 404, b"Entry not found", {"X-Error-Code": "EntryNotFound"}, body)
                return
            data = repo.files[file_path]
            if file_path in repo.sha256:  # an LFS file: its bytes are on the CDN
                sha256 = repo.sha256[file_path]
                headers = {"X-Repo-Commit": repo.sha, "ETag": f'"{hashlib.sha1(data).hexdigest()}"',
                           "X-Linked-Etag": f'"{sha256}"', "X-Linked-Size": str(len(data)),
                           "Location": f"{self.cdn_url}/{sha256}"}
                self._send(h, 302, b"", headers, body)
                return
            headers = {"X-Repo-Commit": repo.sha, "ETag": f'"{hashlib.sha1(data).hexdigest()}"',
                       "Content-Type": "application/octet-stream"}
            self._send(h, 200, data, headers, body)
        else:
            self._send(h, 404, b"Not found", {}, body)

    def _answer_cdn(self, h: BaseHTTPRequestHandler, body: bool) -> None:
        sha256 = urlsplit(h.path).path.strip("/")
        self.requests.append(f"CDN {h.command} /{sha256}")
        for repo in self.repos.values():
            for path, digest in repo.sha256.items():
                if digest == sha256:
                    headers = {"ETag": f'"{sha256}"', "Content-Type": "application/octet-stream"}
                    self._send(h, 200, repo.files[path], headers, body)
                    return
        self._send(h, 404, b"Not found", {}, body)

    def _find(self, h: BaseHTTPRequestHandler, repo_id: str, rev: str, body: bool) -> _Repo | None:
        repo = self.repos.get(repo_id)
        if repo is None:
            self._send(h, 404, b'{"error":"Repository not found"}', {"X-Error-Code": "RepoNotFound"}, body)
        elif not repo.knows_revision(rev):
            self._send(h, 404, b'{"error":"Invalid rev id"}', {"X-Error-Code": "RevisionNotFound"}, body)
            repo = None
        return repo

    @staticmethod
    def _send(h: BaseHTTPRequestHandler, status: int, data: bytes, headers: dict[str, str], body: bool) -> None:
        h.send_response(status)
        for key, value in headers.items():
            h.send_header(key, value)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        if body:
            h.wfile.write(data)
