"""The web form channel: forms from ``[[webform.forms]]`` served over HTTP (aiohttp).

``GET /f/{id}`` is the hosted page, ``GET /f/{id}.js`` a script that renders the
form on another site and posts it cross-origin (CORS, https://fetch.spec.whatwg.org/,
only for the form's ``allowed_origins``), ``POST /f/{id}`` takes a submission
urlencoded, multipart or JSON. A submission is checked at the edge (origin, rate
per address, body size, honeypot, the signed render time, every field), handed to
the ingest sink, and answered only after the sink returned: 201 ``{"id": …}``
(JSON) or the thank-you page. A double submit (the same idempotency key and
content, or the same content within a minute) is one interaction.

A form has no way back to the visitor: answers go by email (``hub.desk.replies``), so
``send`` refuses everything.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

import jinja2
from aiohttp import web

from channels.webform import submission as sub
from channels.webform.guard import ClientAddress, PerAddress, Recent, RenderStamp
from hub.config import FormSection, WebformSection
from hub.kernel import loggers
from hub.kernel.clock import Clock, SystemClock
from hub.kernel.edges import Edges
from hub.kernel.errors import MessageRejected, PermanentDeliveryError, StorageUnavailable
from hub.kernel.http import bound_port, json_response, serve, split_listen
from hub.kernel.ports import ChannelLimits, InboundSink
from hub.kernel.texts import text
from hub.kernel.types import InboundMessage, IngestResult, OutboundMessage, SendResult

log = loggers.channels

_FORM = r"{id:[A-Za-z0-9_-]+}"
_PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "strict-origin-when-cross-origin",
    # The hosted page runs no script at all: whatever got in could not run.
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'",
}
_PREFLIGHT_MAX_AGE = "600"


def _js_literal(value: Any) -> str:
    """JSON safe inside a script: nothing in it can close the script or break a line."""
    return (
        json.dumps(value, ensure_ascii=False)
        .replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


class WebformChannel:
    """The hub's :class:`~hub.kernel.ports.ChannelPort` for web forms (``name = "webform"``).

    ``language`` and ``default_region`` are the hub's (a form may set its own
    language); ``confirm_by_email`` says whether email goes out at all, so that
    a form's ``confirm_email`` is honoured only then. ``listen`` overrides
    ``webform.listen`` (tests: port 0); ``port`` is the bound one.
    """

    name = "webform"
    limits = ChannelLimits()

    def __init__(
        self,
        config: WebformSection,
        *,
        language: str = "ru",
        default_region: str = "RU",
        confirm_by_email: bool = False,
        clock: Clock | None = None,
        listen: str | None = None,
        shutdown_timeout: float = 10.0,
        edges: Edges | None = None,
    ) -> None:
        self.config = config
        self.language = language
        self.default_region = default_region
        self.confirm_by_email = confirm_by_email
        self.clock = clock or SystemClock()
        self.forms: dict[str, FormSection] = {}
        self.bounds: dict[str, tuple[FormSection, sub.Bounds]] = {}
        self.set_forms(config.forms)
        # Without webform.secret a key of this run signs: a page rendered before a
        # restart then only loses its fill-time check, never the submission.
        secret = (
            config.secret.get_secret_value().encode()
            if config.secret is not None
            else secrets.token_bytes(32)
        )
        self.stamp = RenderStamp(secret)
        self.rate = PerAddress(config.rate_limit_per_minute)
        self.address = ClientAddress(config.trust_forwarded, config.trusted_proxies)
        self.recent = Recent()
        # JSON and urlencoded bodies are parsed here, off the event loop, and
        # however many of them come at once they wait for each other only.
        self._parser: ThreadPoolExecutor | None = None
        self.port = 0
        self._listen = listen or config.listen or "127.0.0.1:0"
        self._shutdown_timeout = shutdown_timeout
        self._edges = edges
        self._sink: InboundSink | None = None
        self._runner: web.AppRunner | None = None
        self._templates = jinja2.Environment(
            loader=jinja2.PackageLoader("channels.webform", "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
        self._embed = (
            resources.files("channels.webform").joinpath("templates/embed.js").read_text("utf-8")
        )

    def set_forms(self, forms: Sequence[FormSection]) -> None:
        """The forms served from now on (a reload of the config): a page or a
        submission under way keeps the form it began with."""
        self.bounds = {form.id: (form, self._bounds_of(form)) for form in forms}
        self.forms = {form.id: form for form in forms}

    def _bounds_of(self, form: FormSection) -> sub.Bounds:
        known = self.bounds.get(form.id)
        if known is not None and known[0] is form:
            return known[1]
        return sub.bounds(form, self.config.max_body_bytes, self.config.max_fields)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get(f"/f/{_FORM}.js", self.script)
        app.router.add_get(f"/f/{_FORM}", self.page)
        app.router.add_post(f"/f/{_FORM}", self.submit)
        app.router.add_route("OPTIONS", f"/f/{_FORM}", self.preflight)
        return app

    async def start(self, sink: InboundSink) -> None:
        self._sink = sink
        self._parser = ThreadPoolExecutor(max_workers=2, thread_name_prefix="webform-parse")
        runner = await serve(
            self.app(), self._listen, shutdown_timeout=self._shutdown_timeout, edges=self._edges
        )
        self._runner = runner
        self.port = bound_port(runner)
        host, _ = split_listen(self._listen)
        loggers.event(
            log, "webform.listening", address=f"{host}:{self.port}", forms=len(self.forms)
        )

    async def stop(self) -> None:
        """Stop listening; submissions under way finish (the runner waits for them)."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        self._sink = None
        parser, self._parser = self._parser, None
        if parser is not None:
            parser.shutdown(wait=False)

    async def send(self, message: OutboundMessage) -> SendResult:
        raise PermanentDeliveryError("a web form cannot be answered directly; answers go by email")

    # --- the pages ----------------------------------------------------------------

    def _form_language(self, form: FormSection) -> str:
        return form.language or self.language

    def _form(self, request: web.Request) -> FormSection:
        form = self.forms.get(request.match_info["id"])
        if form is None:
            raise web.HTTPNotFound(text=text("form_unknown", self.language))
        return form

    def _render(
        self,
        form: FormSection,
        *,
        values: dict[str, str] | None = None,
        errors: dict[str, str] | None = None,
        hidden: dict[str, str] | None = None,
        thanks: str | None = None,
        status: int = 200,
    ) -> web.Response:
        language = self._form_language(form)
        values = values or {}
        errors = errors or {}
        fields = [
            {
                "name": f.name,
                "label": sub.label(f, language),
                "type": f.type,
                "required": f.required,
                "max_length": f.max_length,
                "accept": ",".join(f.accept),
                "value": (
                    values.get(f.name, "").strip().lower() in ("on", "true", "1", "yes")
                    if f.type == "checkbox"
                    else ("" if f.type == "file" else values.get(f.name, ""))
                ),
                "error": errors.get(f.name),
            }
            for f in form.fields
        ]
        page = self._templates.get_template("form.html").render(
            language=language,
            title=sub.title(form, language),
            fields=fields,
            errors=errors,
            form_error=errors.get(sub.FORM_ERROR),
            errors_title=text("form_errors_title", language),
            hidden=hidden or {},
            honeypot=self.config.honeypot,
            enctype=(
                "multipart/form-data"
                if any(f.type == "file" for f in form.fields)
                else "application/x-www-form-urlencoded"
            ),
            send=text("form_send", language),
            thanks=thanks,
        )
        return web.Response(
            text=page,
            status=status,
            content_type="text/html",
            charset="utf-8",
            headers=_PAGE_HEADERS,
        )

    def _thank_you(self, form: FormSection) -> str:
        language = self._form_language(form)
        own = form.thank_you_ru if language == "ru" else form.thank_you
        return own or form.thank_you or form.thank_you_ru or text("form_thank_you", language)

    async def page(self, request: web.Request) -> web.Response:
        form = self._form(request)
        hidden = {
            "_ts": self.stamp.sign(form.id, self.clock.now().timestamp()),
            "_key": uuid.uuid4().hex,
            **sub.from_query(request.query),
        }
        referrer = request.headers.get("Referer")
        if referrer:
            hidden["_referrer"] = referrer[:2000]
        return self._render(form, hidden=hidden)

    async def script(self, request: web.Request) -> web.Response:
        form = self._form(request)
        language = self._form_language(form)
        definition = {
            "id": form.id,
            "fields": [
                {
                    "name": f.name,
                    "label": sub.label(f, language),
                    "type": f.type,
                    "required": f.required,
                    "max_length": f.max_length,
                    "accept": ",".join(f.accept),
                }
                for f in form.fields
            ],
            "honeypot": self.config.honeypot,
            "ts": self.stamp.sign(form.id, self.clock.now().timestamp()),
            "send": text("form_send", language),
            "thank_you": self._thank_you(form),
            "redirect": form.redirect,
            "errors_title": text("form_errors_title", language),
            "failed": text("form_failed", language),
        }
        return web.Response(
            text=self._embed.replace("__HUB_FORM__", _js_literal(definition)),
            content_type="application/javascript",
            charset="utf-8",
            headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"},
        )

    # --- cross-origin -------------------------------------------------------------

    def _cors(self, request: web.Request, form: FormSection) -> dict[str, str] | None:
        """The CORS headers for this request's origin; None when it is refused.
        No Origin (a server posting) or the form server's own: no headers needed."""
        origin = request.headers.get("Origin")
        if origin is None or urlsplit(origin).netloc.lower() == request.host.lower():
            return {}
        if origin.lower() in form.allowed_origins:
            return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}
        return None

    def _refuse_origin(self, request: web.Request, form: FormSection) -> web.Response:
        origin = request.headers.get("Origin", "")
        loggers.event(log, "webform.origin_refused", form=form.id, origin=origin[:200])
        message = text("form_origin_refused", self._form_language(form), origin=origin[:200])
        return _json({"errors": {sub.FORM_ERROR: message}}, 403, {"Vary": "Origin"})

    async def preflight(self, request: web.Request) -> web.Response:
        form = self._form(request)
        cors = self._cors(request, form)
        if cors is None:
            return self._refuse_origin(request, form)
        return web.Response(
            status=204,
            headers={
                **cors,
                "Access-Control-Allow-Methods": "POST",
                "Access-Control-Allow-Headers": "Content-Type, Accept, Idempotency-Key",
                "Access-Control-Max-Age": _PREFLIGHT_MAX_AGE,
            },
        )

    # --- a submission -------------------------------------------------------------

    async def submit(self, request: web.Request) -> web.StreamResponse:
        form = self._form(request)
        cors = self._cors(request, form)
        if cors is None:
            return self._refuse_origin(request, form)
        wants_json = "application/json" in request.headers.get("Accept", "") or (
            request.content_type == "application/json"
        )
        answer = _Answer(form, self._form_language(form), wants_json, cors)
        posted = await self._take(request, answer)
        if isinstance(posted, web.Response):
            return posted
        now = self.clock.now()
        if self._too_fast(form, posted, now.timestamp()):
            loggers.event(log, "webform.too_fast", form=form.id)
            return self._again(
                answer, posted, {sub.FORM_ERROR: text("form_too_fast", answer.language)}
            )
        cleaned = sub.validate(form, posted, answer.language, self.default_region)
        if not isinstance(cleaned, sub.Cleaned):
            return self._again(answer, posted, cleaned)
        content = sub.content_key(form, cleaned)
        recent_key = f"{form.id}:{content}"
        key = request.headers.get("Idempotency-Key") or posted.values.get("_key")
        external_id = self.recent.external_id(
            recent_key, lambda: _fresh_id(form.id, content, key, now.timestamp())
        )
        message = sub.to_message(
            form,
            cleaned,
            external_id=external_id,
            language=answer.language,
            received_at=now,
            origin=sub.context(posted, request.headers, form, self.config.honeypot),
            confirm=form.confirm_email and self.confirm_by_email,
        )
        result = await self._hand_over(answer, message, recent_key)
        if isinstance(result, web.Response):
            return result
        loggers.event(
            log,
            "webform.received",
            form=form.id,
            interaction=result.interaction_id,
            client=result.client_id,
            duplicate=result.duplicate,
            files=len(cleaned.files),
        )
        return self._received(answer, result)

    async def _take(self, request: web.Request, answer: _Answer) -> sub.Posted | web.Response:
        """The posted body, or the answer refusing it: too many from this address,
        too large, unreadable, or caught by the honeypot."""
        form = answer.form
        wait = self.rate.allow(self.address(request))
        if wait:
            loggers.event(log, "webform.rate_limited", form=form.id)
            response = self._whole(answer, "form_rate_limited", 429)
            response.headers["Retry-After"] = str(max(1, round(wait)))
            return response
        limit = self.config.max_body_bytes
        try:
            posted = await sub.read(request, self._bounds_of(form), self._parser)
        except sub.BodyTooLarge:
            loggers.event(log, "webform.too_large", form=form.id)
            response = self._whole(answer, "form_too_large", 413, limit=sub.size_text(limit))
            response.force_close()  # the rest of the body is not read
            return response
        except sub.BadBody as exc:
            loggers.event(log, "webform.bad_body", form=form.id, why=exc.key)
            response = self._whole(answer, exc.key, 400, **exc.values)
            response.force_close()  # a multipart body is left unread past the bad part
            return response
        if posted.values.get(self.config.honeypot):
            loggers.event(log, "webform.honeypot", form=form.id)
            return self._whole(answer, "form_spam", 422)
        return posted

    def _too_fast(self, form: FormSection, posted: sub.Posted, now: float) -> bool:
        """Sent sooner after the page was rendered than a person fills the form."""
        token = posted.values.get("_ts")
        rendered = self.stamp.verify(form.id, token) if token else None
        return rendered is not None and now - rendered < form.min_fill_seconds

    async def _hand_over(
        self, answer: _Answer, message: InboundMessage, recent_key: str
    ) -> IngestResult | web.Response:
        """The sink's result, or the answer saying why the submission is not kept."""
        sink = self._sink
        try:
            if sink is None:
                raise StorageUnavailable("the form server is stopping")
            return await sink(message)
        except StorageUnavailable:
            self.recent.forget(recent_key)
            return self._whole(answer, "form_unavailable", 503)
        except MessageRejected:
            self.recent.forget(recent_key)
            return self._whole(answer, "form_bad_body", 422)
        except BaseException:
            self.recent.forget(recent_key)
            raise

    # --- the answers to a submission ----------------------------------------------

    def _whole(self, answer: _Answer, key: str, status: int, **values: Any) -> web.Response:
        """An error about the whole submission, in the form's language."""
        message = text(key, answer.language, **values)
        if answer.json:
            return _json({"errors": {sub.FORM_ERROR: message}}, status, answer.cors)
        return self._render(answer.form, errors={sub.FORM_ERROR: message}, status=status)

    def _again(self, answer: _Answer, posted: sub.Posted, errors: dict[str, str]) -> web.Response:
        """The errors field by field; a page keeps what was typed, to correct."""
        if answer.json:
            return _json({"errors": errors}, 422, answer.cors)
        hidden = {
            k: posted.values[k][:2000]
            for k in ("_ts", "_key", "_referrer", *sub.UTM_KEYS)
            if posted.values.get(k)
        }
        return self._render(
            answer.form, values=posted.values, errors=errors, hidden=hidden, status=422
        )

    def _received(self, answer: _Answer, result: IngestResult) -> web.StreamResponse:
        if answer.json:
            body = {"id": result.interaction_id, "duplicate": result.duplicate}
            return _json(body, 201, answer.cors)
        if answer.form.redirect:
            raise web.HTTPSeeOther(answer.form.redirect)
        return self._render(answer.form, thanks=self._thank_you(answer.form))


@dataclass(frozen=True, slots=True)
class _Answer:
    """How one submission is answered: the form, its language, JSON (a script or
    an API posted) or a page, and the CORS headers for the request's origin."""

    form: FormSection
    language: str
    json: bool
    cors: dict[str, str]


def _fresh_id(form_id: str, content: str, key: str | None, now: float) -> str:
    """A new submission's id: by its idempotency key and content, else by its
    content and second (a double click is one interaction)."""
    if key:
        digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:32]
        return f"{form_id}:key:{digest}:{content[:16]}"
    return f"{form_id}:content:{content[:32]}:{int(now)}"


def _json(data: Any, status: int, headers: dict[str, str] | None = None) -> web.Response:
    """A JSON answer to a visitor's browser: never kept in a cache."""
    return json_response(data, status, {"Cache-Control": "no-store", **(headers or {})})
