"""Who may reach the HTTP transports, and which namespaces each caller may use.

Bearer tokens come from ``MIMIR_AUTH_TOKENS`` (``name:secret:ns1,ns2;name2:secret2:*``) or a JSON / TOML
file (``MIMIR_AUTH_TOKENS_FILE``); each names the namespaces it may read and write. The HTTP app is
wrapped in ``AccessGuard``: Host and Origin are checked first (on every bind address, with the SDK's
own matching rules), then the bearer token (the SDK's ``BearerAuthBackend`` over ``TokenTable``); the
SDK's transport limits the body size. Inside the tools and resources, ``scope_of`` turns the token behind
a call into the ``Scope`` the service holds the call to. stdio and in-process clients carry no token and
get ``OWNER``: whoever starts the process owns the store.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mcp.server.auth.middleware.auth_context import AuthContextMiddleware
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser, BearerAuthBackend, RequireAuthMiddleware
from mcp.server.auth.provider import AccessToken
from mcp.server.transport_security import TransportSecurityMiddleware, TransportSecuritySettings
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Send
from starlette.types import Scope as ASGIScope

from mimir_mcp.server.validation import NAMESPACE_PATTERN
from mimir_mcp.service.scope import OWNER, Scope

if TYPE_CHECKING:
    from mcp.server.mcpserver import Context

    from mimir_mcp.config import Settings
    from mimir_mcp.server.app import CheckedServer
    from mimir_mcp.ui.app import WebPage

logger = logging.getLogger(__name__)
audit_logger = logging.getLogger("mimir_mcp.audit")

ANY_NAMESPACE = "*"
# Rides with a read-only token's namespaces in its grant; no namespace can be named so (':' is not allowed).
READ_ONLY_SCOPE = "mimir:read-only"
MIN_SECRET_CHARS = 16
TOKEN_NAME_CHARS = 64
LOOPBACK_HOSTS = ("127.0.0.1:*", "localhost:*", "[::1]:*")
# A Host header, and an Origin: a name or an address, and at most a port of digits after it.
HOST = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(:\d{1,5})?")
ORIGIN = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://" + HOST.pattern + "|null")
WILDCARD_BINDS = ("0.0.0.0", "::", "")
# The web page (``mimir_mcp.ui``) and its API, on the HTTP transports' port.
UI_PATH = "/ui"
UI_API_PATH = "/ui/api"
SECRET_HINT = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"


class TokenConfigError(ValueError):
    """The tokens setting or file is malformed. Messages name the entry, never its secret."""


class ExposureError(RuntimeError):
    """Serving on a non-loopback address without tokens, and without ``--allow-unauthenticated``."""


@dataclass(frozen=True)
class Token:
    """One bearer token: its name (shown in logs and ``written_by``), the SHA-256 of its secret, the
    namespaces it may use (``None``: every namespace), and whether it may only read them."""

    name: str
    digest: bytes
    namespaces: frozenset[str] | None
    read_only: bool = False

    def __repr__(self) -> str:  # never the digest either
        scope = "*" if self.namespaces is None else ",".join(sorted(self.namespaces))
        return f"Token(name={self.name!r}, namespaces={scope!r}, read_only={self.read_only})"


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def make_token(name: Any, secret: Any, namespaces: Iterable[str], where: str, read_only: Any = False) -> Token:
    """A checked token; ``where`` names the entry in error messages (the secret never appears)."""
    if not isinstance(name, str) or not NAMESPACE_PATTERN.fullmatch(name):
        raise TokenConfigError(
            f"{where}: the name must be 1-{TOKEN_NAME_CHARS} characters from A-Z a-z 0-9 . _ - "
            "starting with a letter or digit"
        )
    where = f"{where} ({name!r})"
    if not isinstance(secret, str) or len(secret) < MIN_SECRET_CHARS:
        raise TokenConfigError(
            f"{where}: the secret must be at least {MIN_SECRET_CHARS} characters; make one with {SECRET_HINT}"
        )
    if not secret.isascii() or not secret.isprintable() or any(c in secret for c in " ;"):
        raise TokenConfigError(f"{where}: the secret must be printable ASCII without spaces or ';'")
    scope = [namespaces] if isinstance(namespaces, str) else list(namespaces)
    if not scope:
        raise TokenConfigError(f"{where}: give the namespaces it may use, or '*' for all of them")
    for namespace in scope:
        if namespace != ANY_NAMESPACE and not (isinstance(namespace, str) and NAMESPACE_PATTERN.fullmatch(namespace)):
            raise TokenConfigError(f"{where}: {namespace!r} is not a namespace (1-64 of A-Z a-z 0-9 . _ -) or '*'")
    if not isinstance(read_only, bool):
        raise TokenConfigError(f"{where}: read_only must be true or false")
    return Token(name, _digest(secret), None if ANY_NAMESPACE in scope else frozenset(scope), read_only)


def parse_tokens(text: str, source: str = "MIMIR_AUTH_TOKENS") -> list[Token]:
    """``name:secret:ns1,ns2`` entries separated by ``;`` (or new lines). The secret may hold ':'."""
    tokens = []
    entries = [entry.strip() for line in text.splitlines() for entry in line.split(";")]
    for number, entry in enumerate([entry for entry in entries if entry], start=1):
        name, _, rest = entry.partition(":")
        secret, _, scope = rest.rpartition(":")
        if not secret:
            raise TokenConfigError(f"{source} entry {number}: write it as name:secret:namespaces (e.g. ci:SECRET:*)")
        namespaces = [namespace.strip() for namespace in scope.split(",") if namespace.strip()]
        tokens.append(make_token(name, secret, namespaces, f"{source} entry {number}"))
    return tokens


def read_tokens_file(path: Path) -> list[Token]:
    """A JSON or TOML (by suffix) file: ``{"tokens": [{"name", "secret", "namespaces", "read_only"}]}`` or,
    in TOML, ``[[tokens]]`` tables with the same keys (``read_only`` optional, false by default)."""
    try:
        raw = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise TokenConfigError(f"tokens file {path}: cannot be read ({exc.strerror})") from None
    is_toml = path.suffix.lower() == ".toml"
    try:
        data: Any = tomllib.loads(raw) if is_toml else json.loads(raw)
    except ValueError:  # TOMLDecodeError too
        # Not the parser's message: it may quote a line, and a line may hold a secret.
        raise TokenConfigError(f"tokens file {path}: not valid {'TOML' if is_toml else 'JSON'}") from None
    entries = data.get("tokens") if isinstance(data, dict) else data
    if not isinstance(entries, list):
        raise TokenConfigError(f"tokens file {path}: expected a list of tokens under 'tokens'")
    tokens = []
    for number, entry in enumerate(entries, start=1):
        where = f"tokens file {path} entry {number}"
        if not isinstance(entry, dict) or set(entry) - {"name", "secret", "namespaces", "read_only"}:
            raise TokenConfigError(f"{where}: expected an object with name, secret, namespaces and read_only only")
        namespaces = entry.get("namespaces") or []
        tokens.append(
            make_token(entry.get("name"), entry.get("secret"), namespaces, where, entry.get("read_only", False))
        )
    if path.stat().st_mode & 0o077:
        logger.warning("tokens file %s can be read by other users; chmod 600 it", path)
    return tokens


def load_tokens(settings: Settings) -> list[Token]:
    """Every configured token, from the setting and the file; names and secrets must be unique."""
    tokens = []
    if settings.auth.tokens is not None:
        tokens += parse_tokens(settings.auth.tokens.get_secret_value())
    if settings.auth.tokens_file is not None:
        tokens += read_tokens_file(settings.auth.tokens_file.expanduser())
    names = [token.name for token in tokens]
    if duplicated := sorted({name for name in names if names.count(name) > 1}):
        raise TokenConfigError(f"token names must be unique: {', '.join(duplicated)} given more than once")
    if len({token.digest for token in tokens}) < len(tokens):
        raise TokenConfigError("two tokens share one secret: give each its own")
    return tokens


class TokenTable:
    """The SDK's ``TokenVerifier`` over the configured tokens. Every token is compared (in constant time,
    as SHA-256 digests, so neither the match nor a secret's length shows in the timing)."""

    def __init__(self, tokens: Iterable[Token]) -> None:
        self._tokens = tuple(tokens)

    def __bool__(self) -> bool:
        return bool(self._tokens)

    async def verify_token(self, token: str) -> AccessToken | None:
        digest = _digest(token)
        found = None
        for candidate in self._tokens:
            if hmac.compare_digest(digest, candidate.digest):
                found = candidate
        if found is None:
            return None
        scopes = [ANY_NAMESPACE] if found.namespaces is None else sorted(found.namespaces)
        if found.read_only:
            scopes.append(READ_ONLY_SCOPE)
        # ``token`` carries the name, not the secret: nothing downstream needs the secret.
        return AccessToken(token=found.name, client_id=found.name, scopes=scopes)


def scope_of(ctx: Context | None) -> Scope:
    """What the token behind this tool call may touch, from the HTTP request the transport attached;
    ``OWNER`` when the call came with no token (stdio, in-process, or HTTP with no tokens configured)."""
    try:
        request = None if ctx is None else ctx.request_context.request
    except ValueError:  # called outside a request
        return OWNER
    return scope_of_request(request)


def scope_of_request(request: Any) -> Scope:
    """``scope_of`` for handlers below the tools (resources), which see the HTTP request itself."""
    user = request.scope.get("user") if isinstance(request, Request) else None
    if not isinstance(user, AuthenticatedUser):
        return OWNER
    token = user.access_token
    namespaces = frozenset(token.scopes) - {READ_ONLY_SCOPE}
    read_only = READ_ONLY_SCOPE in token.scopes
    return Scope(token.client_id, None if ANY_NAMESPACE in namespaces else namespaces, read_only)


def client_of(ctx: Context | None) -> str:
    """The calling MCP client's own name and version (``clientInfo``), for the audit log."""
    try:
        info = ctx.request_context.session.client_params.client_info  # type: ignore[union-attr]
        return f"{info.name}/{info.version}"
    except (AttributeError, ValueError):
        return "-"


def audit(action: str, ctx: Context | None, scope: Scope, **fields: object) -> None:
    """One line per write, update or forget: which token and client did it, and to what."""
    details = " ".join(f"{key}={value}" for key, value in fields.items())
    audit_logger.info("%s token=%s client=%s %s", action, scope.name or "-", json.dumps(client_of(ctx)), details)


# -- the HTTP side ---------------------------------------------------------------------------------


def is_loopback(host: str) -> bool:
    """Only addresses that cannot be reached from another machine; any other name counts as exposed."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


def transport_security(settings: Settings) -> TransportSecuritySettings:
    """Host and Origin allow-lists, always on. Loopback names are always allowed (only a local client
    reaches the server by them). Beyond them: ``allowed_hosts``, else the bind address itself (nothing
    more for a wildcard bind such as 0.0.0.0: list the names clients use). Origins: ``allowed_origins``,
    else http:// and https:// of every allowed host. A request without Origin (no browser) passes."""
    server = settings.server
    hosts: list[str] = list(LOOPBACK_HOSTS)
    if server.allowed_hosts is not None:
        hosts += server.allowed_hosts
    elif server.host not in WILDCARD_BINDS:
        hosts.append(_host_port(server.host, server.port))
    if server.allowed_origins is not None:
        origins = [f"http://{host}" for host in LOOPBACK_HOSTS] + server.allowed_origins
    else:
        origins = [f"{scheme}://{host}" for host in hosts for scheme in ("http", "https")]
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=list(dict.fromkeys(hosts)),
        allowed_origins=list(dict.fromkeys(origins)),
    )


def body_limit(settings: Settings) -> int:
    """``max_body_bytes``, else room for the largest valid ``remember``: JSON escaping at most doubles a
    text's UTF-8 bytes (quotes, backslashes, tabs and new lines become two bytes), plus 1 MiB for the rest."""
    if settings.server.max_body_bytes is not None:
        return settings.server.max_body_bytes
    return 2 * settings.limits.max_batch * settings.limits.max_text_bytes + 1024 * 1024


def check_exposure(settings: Settings, tokens: list[Token]) -> str | None:
    """Refuse (``ExposureError``) an HTTP server on a non-loopback address with no tokens, unless
    ``allow_unauthenticated``; then return the warning to log. ``None`` when there is nothing to warn of."""
    server = settings.server
    if server.transport == "stdio" or tokens or is_loopback(server.host):
        return None
    where = f"{server.transport} on {_host_port(server.host or '*', server.port)}"
    if not settings.auth.allow_unauthenticated:
        raise ExposureError(
            f"refusing to serve {where} without authentication: anyone who can reach that address could read, "
            "change and forget every memory. Set MIMIR_AUTH_TOKENS or MIMIR_AUTH_TOKENS_FILE (see "
            "docs/operations.md, 'Exposing the server'), bind 127.0.0.1, or pass --allow-unauthenticated to "
            "accept the risk."
        )
    return (
        f"serving {where} WITHOUT AUTHENTICATION (--allow-unauthenticated): anyone who can reach that "
        "address can read, change and forget every memory"
    )


class AccessGuard:
    """ASGI middleware in front of the MCP app and the web page: Host/Origin first (421 / 403, before
    anything else is looked at), then, with tokens, a valid bearer token (401 otherwise, the same answer for
    a missing, malformed or unknown token). The token's grant rides on the request to the tools. The web
    page's own files (``ui``, under ``UI_PATH``) hold no memories and need no token; its API does."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        security: TransportSecuritySettings,
        tokens: TokenTable | None,
        ui: WebPage | None = None,
    ) -> None:
        self._app = app
        self._headers = TransportSecurityMiddleware(security)
        self._authenticated = self._checked(app, tokens)
        # The page (its files as they are), and the page behind the token check (for its API).
        self._ui: tuple[WebPage, ASGIApp] | None = None if ui is None else (ui, self._checked(ui, tokens))

    def close(self) -> None:
        """Before the server shuts down: end the streams that would keep it waiting (the page's live view)."""
        if self._ui is not None:
            self._ui[0].close()

    @staticmethod
    def _checked(app: ASGIApp, tokens: TokenTable | None) -> ASGIApp:
        if not tokens:
            return app
        return AuthenticationMiddleware(
            RequireAuthMiddleware(AuthContextMiddleware(app), required_scopes=[]), backend=BearerAuthBackend(tokens)
        )

    async def __call__(self, scope: ASGIScope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # lifespan
            await self._app(scope, receive, send)
            return
        request = Request(scope)
        origin, host = request.headers.get("origin"), request.headers.get("host")
        # The SDK matches "host:*" by prefix, so "http://127.0.0.1:8000.evil.example" would pass as loopback:
        # a port is digits, and nothing follows it.
        if (origin is not None and not ORIGIN.fullmatch(origin)) or (host is not None and not HOST.fullmatch(host)):
            await Response("Invalid Host or Origin header", status_code=403 if origin else 421)(scope, receive, send)
            return
        refused = await self._headers.validate_request(request, is_post=False)
        if refused is not None:
            await refused(scope, receive, send)
            return
        path = scope["path"]
        if self._ui is not None and (path == UI_PATH or path.startswith(UI_PATH + "/")):
            files, api = self._ui
            await (api if path.startswith(UI_API_PATH + "/") else files)(scope, receive, send)
            return
        await self._authenticated(scope, receive, send)


def http_app(server: CheckedServer, settings: Settings, tokens: list[Token]) -> AccessGuard:
    """The SSE or streamable-HTTP app of ``server``, and the web page unless it is off, with every check of
    this module in front."""
    security = transport_security(settings)
    options: dict[str, Any] = {"transport_security": security, "max_request_body_size": body_limit(settings)}
    if settings.server.transport == "sse":
        app = server.sse_app(**options)
    else:
        app = server.streamable_http_app(**options)
    ui = None
    if settings.server.ui:
        from mimir_mcp.ui.app import WebPage

        ui = WebPage(server, settings)
    return AccessGuard(app, security=security, tokens=TokenTable(tokens) if tokens else None, ui=ui)
