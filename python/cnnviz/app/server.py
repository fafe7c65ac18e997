"""The dashboard's web server: a Flask app (``create_app``) over a :class:`Session`, and
:func:`dashboard`, which serves a model from a background thread of the calling process.

Safe by default: it listens on 127.0.0.1 only; every request, the page included, must carry
the random token (``?token=`` or the ``X-Cnnviz-Token`` header); uploads are size-limited,
kept in memory and decoded only by cnnviz's decoder; the client names images, layers and
methods by id, never by path; errors come back as JSON with a 4xx/5xx status.
"""
from __future__ import annotations

import hmac
import html
import io
import os
import secrets
import threading
from typing import Any, Dict, Optional, Sequence

import torch
from flask import Flask, Request, Response, jsonify, request
from werkzeug.exceptions import HTTPException
from werkzeug.serving import WSGIRequestHandler, make_server

import cnnviz

from . import render
from .jobs import JobRunner
from .methods import COLORMAPS, is_live, parse_spec, run_method
from .session import LIVE, METHOD_TITLES, METHODS, RequestError, Session, model_info

STATIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
#: The only files the page may load (no client path reaches the file system).
STATIC_FILES = {"app.js": "text/javascript; charset=utf-8", "app.css": "text/css; charset=utf-8"}
UPLOAD_TYPES = ("image/png", "image/jpeg", "image/gif", "image/bmp", "image/x-ms-bmp", "application/octet-stream")
DEFAULT_MAX_UPLOAD = 16 * 1024 * 1024
MAX_SIDE, MAX_PIXELS = 8192, 40_000_000
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "base-uri 'none'; form-action 'none'")


class _InMemoryRequest(Request):
    """Multipart uploads stay in memory (bounded by MAX_CONTENT_LENGTH), never in temp files."""

    def _get_file_stream(self, total_content_length, content_type, filename=None, content_length=None):
        return io.BytesIO()


def _read_static(name: str) -> bytes:
    with open(os.path.join(STATIC, name), "rb") as f:
        return f.read()


def create_app(session: Session, token: Optional[str] = None, max_upload: int = DEFAULT_MAX_UPLOAD) -> Flask:
    """The Flask app serving ``session``; ``app.config["CNNVIZ_TOKEN"]`` is the access token
    and ``app.extensions["cnnviz"]`` holds the session and the job runner."""
    app = Flask(__name__, static_folder=None)
    app.request_class = _InMemoryRequest
    app.config["MAX_CONTENT_LENGTH"] = int(max_upload)
    app.config["CNNVIZ_TOKEN"] = token or secrets.token_urlsafe(24)
    runner = JobRunner()
    app.extensions["cnnviz"] = {"session": session, "runner": runner}
    expected = app.config["CNNVIZ_TOKEN"].encode()

    def error(message: str, status: int) -> Response:
        r = jsonify({"error": message})
        r.status_code = status
        return r

    @app.before_request
    def check_token():
        given = request.args.get("token") or request.headers.get("X-Cnnviz-Token") or ""
        if not hmac.compare_digest(given.encode(), expected):
            return error("access token missing or wrong: open the URL the dashboard printed", 403)
        return None

    @app.after_request
    def headers(response: Response) -> Response:
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.errorhandler(HTTPException)
    def http_error(e: HTTPException):
        if e.code == 413:
            return error(str(too_large()), 413)
        return error(e.description or e.name, e.code or 500)

    @app.errorhandler(RequestError)
    def request_error(e: RequestError):
        return error(str(e), e.status)

    @app.errorhandler(Exception)
    def internal_error(e: Exception):
        app.logger.exception("cnnviz dashboard: request failed")
        return error(f"internal error: {type(e).__name__}", 500)

    @app.get("/")
    def index():
        page = _read_static("index.html").decode("utf-8").replace("__TOKEN__", html.escape(app.config["CNNVIZ_TOKEN"]))
        return Response(page, mimetype="text/html")

    @app.get("/static/<name>")
    def static_file(name: str):
        if name not in STATIC_FILES:
            return error("not found", 404)
        return Response(_read_static(name), content_type=STATIC_FILES[name])

    @app.get("/api/info")
    def info():
        i = session.info
        return jsonify({
            "model": i.name, "size": i.size, "classes": len(i.labels),
            "layers": [{"name": r.name, "type": r.type, "shape": list(r.output_shape), "params": r.num_parameters,
                        "spatial": len(r.output_shape) == 4} for r in i.layers if r.name],
            "methods": [{"id": m, "title": METHOD_TITLES[m], "live": m in LIVE} for m in METHODS],
            "colormaps": [c for c in COLORMAPS if c in cnnviz.colormap_names()],
            "images": session.image_list(),
            "max_upload": app.config["MAX_CONTENT_LENGTH"],
        })

    @app.get("/api/images")
    def images():
        return jsonify({"images": session.image_list()})

    @app.get("/api/image/<image_id>")
    def image(image_id: str):
        stored = session.image(image_id)
        png = cnnviz.encode_image(render.show_input(stored.x, session.info.mean, session.info.std), "png")
        return Response(png, mimetype="image/png")

    def too_large() -> RequestError:
        return RequestError(f"upload too large: the limit is {app.config['MAX_CONTENT_LENGTH'] // 1024} KiB", 413)

    @app.post("/api/upload")
    def upload():
        limit = app.config["MAX_CONTENT_LENGTH"]
        if request.content_length is not None and request.content_length > limit:
            raise too_large()  # refused before reading the body
        ctype = (request.mimetype or "").lower()
        if ctype == "multipart/form-data":
            f = request.files.get("file")
            if f is None:
                raise RequestError("the upload needs a 'file' field")
            if f.mimetype and f.mimetype.lower() not in UPLOAD_TYPES:
                raise RequestError(f"unsupported file type {f.mimetype!r}: send a PNG, JPEG, BMP or GIF", 415)
            data, name = f.read(), f.filename or "upload"
        elif ctype in UPLOAD_TYPES:
            data = request.stream.read(limit + 1)  # also bounds a body sent without a length
            if len(data) > limit:
                raise too_large()
            name = request.headers.get("X-Filename", "upload")
        else:
            raise RequestError(f"unsupported content type {ctype or 'none'!r}: send a PNG, JPEG, BMP or GIF as "
                               "multipart/form-data or as the request body", 415)
        if not data:
            raise RequestError("the upload is empty")
        try:
            pixels = cnnviz.decode_image(data, max_side=MAX_SIDE, max_pixels=MAX_PIXELS)
        except ValueError as e:
            raise RequestError("not an image cnnviz can read: " + str(e).strip().splitlines()[0]) from None
        # The name is shown only: path parts and odd characters are dropped.
        name = "".join(ch for ch in os.path.basename(name.replace("\\", "/")) if ch.isprintable())[:80] or "upload"
        stored = session.add_image(pixels, name, "upload")
        return jsonify({"id": stored.id, "name": stored.name, "source": stored.source,
                        "width": int(pixels.shape[1]), "height": int(pixels.shape[0])}), 201

    @app.get("/api/predict")
    def predict():
        k = request.args.get("k", "5")
        if not k.isdigit() or not 1 <= int(k) <= 20:
            raise RequestError("k must be an integer in [1, 20]")
        return jsonify({"image": request.args.get("image", ""),
                        "predictions": session.predict(request.args.get("image", ""), int(k))})

    @app.get("/api/filters")
    def filters():
        image_id, layer = request.args.get("image", ""), request.args.get("layer", "")
        return jsonify({"image": image_id, "layer": layer, "filters": session.filters(image_id, layer)})

    @app.post("/api/run")
    def run():
        body = request.get_json(silent=True)
        if body is None:
            raise RequestError("the request body must be JSON (Content-Type: application/json)", 415
                               if request.mimetype != "application/json" else 400)
        spec_a = parse_spec(session, body)
        spec_b = None
        if isinstance(body.get("compare"), dict):
            spec_b = parse_spec(session, {**body, **body["compare"], "compare": None})
        total = max(spec_a.iterations if is_live(spec_a.method) else 0,
                    spec_b.iterations if spec_b is not None and is_live(spec_b.method) else 0)

        def work(job) -> Dict[str, Any]:
            out: Dict[str, Any] = {}
            for pane, spec in (("a", spec_a), ("b", spec_b)):
                if spec is None:
                    continue
                job.pane = pane
                out[pane] = run_method(session, spec, job.progress, job.show)
            return out

        job = runner.start(work, total)
        return jsonify({"job": job.id}), 202

    @app.get("/api/job/<job_id>")
    def job_state(job_id: str):
        job = runner.get(job_id)
        if job is None:
            raise RequestError(f"unknown job {job_id!r}", 404)
        return jsonify(job.snapshot())

    @app.post("/api/stop")
    def stop():
        job = runner.stop()
        return jsonify({"stopped": job.id if job is not None else None})

    return app


class _QuietHandler(WSGIRequestHandler):
    """No line per request (it would fill a notebook's output); errors are still logged."""

    def log_request(self, *args, **kwargs) -> None:
        pass


class Dashboard:
    """A running dashboard: ``url`` (with the token), ``stop()``; shows itself in Jupyter
    as the page in an IFrame with a link to open it in a browser tab."""

    def __init__(self, app: Flask, host: str = "127.0.0.1", port: int = 0, width: str = "100%",
                 height: int = 820) -> None:
        self.app = app
        self._server = make_server(host, port, app, threaded=True, request_handler=_QuietHandler)
        self.host, self.port = host, self._server.server_port
        self.token = app.config["CNNVIZ_TOKEN"]
        self.width, self.height = width, height
        self._thread = threading.Thread(target=self._server.serve_forever, name="cnnviz-dashboard", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/?token={self.token}"

    @property
    def session(self) -> Session:
        return self.app.extensions["cnnviz"]["session"]

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def wait(self) -> None:
        """Blocks until the server stops (Ctrl-C raises KeyboardInterrupt here)."""
        while self._thread.is_alive():
            self._thread.join(0.5)

    def stop(self, timeout: float = 30) -> None:
        """Cancels the running job, stops the server and waits for its threads."""
        runner: JobRunner = self.app.extensions["cnnviz"]["runner"]
        runner.stop()
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(timeout)
        self._server.server_close()
        runner.join_all(timeout)

    def _repr_html_(self) -> str:
        url = html.escape(self.url)
        return (f'<iframe src="{url}" width="{html.escape(str(self.width))}" height="{int(self.height)}" '
                f'style="border:1px solid #ccc" title="cnnviz dashboard"></iframe>'
                f'<p><a href="{url}" target="_blank" rel="noopener">Open the cnnviz dashboard in a new tab</a> '
                f'(serving {html.escape(self.session.info.name)} at {html.escape(self.host)}:{self.port})</p>')

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"Dashboard({self.url}, {state})"

    def __enter__(self) -> "Dashboard":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _image_items(images) -> Sequence:
    if images is None:
        return []
    if isinstance(images, torch.Tensor) and images.dim() == 4:
        return [images[i:i + 1] for i in range(images.shape[0])]
    if isinstance(images, (str, os.PathLike, torch.Tensor)) or hasattr(images, "convert"):
        return [images]
    return list(images)


def dashboard(model, images=None, labels=None, *, size: Optional[int] = None,
              mean: Optional[Sequence[float]] = None, std: Optional[Sequence[float]] = None,
              samples: bool = True, host: str = "127.0.0.1", port: int = 0, token: Optional[str] = None,
              max_upload: int = DEFAULT_MAX_UPLOAD, name: Optional[str] = None) -> Dashboard:
    """Serves an interactive page for ``model`` (any ``nn.Module`` or TorchScript model, in
    eval mode) from a background thread of this process, and returns a :class:`Dashboard`:
    in Jupyter it shows the page inline (an IFrame, and a link); ``.url`` opens it in a
    browser; ``.stop()`` ends it.

    ``images``: paths, (H, W, 3) images, PIL images, or normalized model inputs (1 or N, 3,
    size, size); the sample photos of ``cnnviz.data_dir()`` are added unless ``samples`` is
    False, and the page can upload more. ``labels``: "imagenet", "cifar10", a list of class
    names, or None to infer (ImageNet for 1000 outputs, CIFAR-10 for the sample ResNets).
    ``size``: the input side (default 32 for the sample CIFAR ResNets, else 224); ``mean``
    and ``std``: the input normalization (default ImageNet's).

    The server listens on ``host`` 127.0.0.1 at ``port`` (0: a free one) and requires the
    random ``token`` in every request; uploads over ``max_upload`` bytes are refused.
    """
    if not isinstance(host, str) or not host:
        raise ValueError("cnnviz: host must be a host name or address")
    if not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"cnnviz: port must be in [0, 65535], got {port!r}")
    items = _image_items(images)
    paths = [os.path.basename(os.fspath(i)) if isinstance(i, (str, os.PathLike)) else None for i in items]
    names = [p or f"image {k + 1}" for k, p in enumerate(paths)]
    info = model_info(model, labels=labels, size=size, mean=mean, std=std, name=name)
    session = Session(info, items, names, samples=None if samples else [])
    return Dashboard(create_app(session, token=token, max_upload=max_upload), host, port)
