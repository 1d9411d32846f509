"""A toykv member: keys as files in its data directory, served over HTTP."""

import argparse
import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit


class Member(BaseHTTPRequestHandler):
    data: Path

    def _reply(self, code: int, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        url = urlsplit(self.path)
        if url.path == "/health":
            return self._reply(200, b"ok")
        if url.path == "/kv":
            prefix = parse_qs(url.query).get("prefix", [""])[0]
            found = {unquote(f.name): f.read_text() for f in self.data.iterdir() if unquote(f.name).startswith(prefix)}
            return self._reply(200, json.dumps(found).encode())
        file = self.data / quote(url.path.removeprefix("/kv/"), safe="")
        return self._reply(200, file.read_bytes()) if file.exists() else self._reply(404, b"")

    def do_PUT(self) -> None:  # noqa: N802
        value = self.rfile.read(int(self.headers["Content-Length"]))
        file = self.data / quote(urlsplit(self.path).path.removeprefix("/kv/"), safe="")
        tmp = file.with_suffix(".tmp")
        tmp.write_bytes(value)
        os.replace(tmp, file)  # durable enough for a toy: acknowledged after the rename
        self._reply(204, b"")

    def log_message(self, *args: object) -> None:
        pass


if __name__ == "__main__":
    args = argparse.ArgumentParser()
    args.add_argument("--port", type=int, required=True)
    args.add_argument("--data-dir", type=Path, required=True)
    opts = args.parse_args()
    opts.data_dir.mkdir(parents=True, exist_ok=True)
    Member.data = opts.data_dir
    ThreadingHTTPServer(("127.0.0.1", opts.port), Member).serve_forever()
