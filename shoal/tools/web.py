"""``web_fetch(url, max_bytes?, timeout?)``: one web page, as text the model can read.

A fetch is a network call out of the user's machine, so it is of kind
``network``: it asks in every mode but bypass, and ``web_fetch:HOST`` rules
(``--allow 'web_fetch:docs.python.org'``, ``--deny 'web_fetch:*.example.com'``)
decide it by the host name. What it will not do, whatever the rules say:

- reach an address that is not public (loopback 127.0.0.0/8 and ::1, private
  10/8, 172.16/12, 192.168/16 and fc00::/7, link-local 169.254/16 and fe80::/10,
  carrier-grade NAT, multicast, reserved), unless an allow rule names that host
  or address literally (``--allow web_fetch:127.0.0.1``: no pattern does);
- trust a name's address twice: the name is resolved once, every address it has
  is checked, and the connection goes to the checked address (the name is sent as
  ``Host`` and, for https, as the TLS server name the certificate is checked
  against), so a DNS answer that changes between check and connect (rebinding)
  changes nothing;
- follow a redirect it has not checked: redirects (at most 5) are followed one
  by one, each hop's address checked the same way and its host decided by the
  rules again (a hop to another host that would ask is refused: the model can
  fetch it directly, which asks);
- read past ``max_bytes`` (the page is cut, and says so) or past ``timeout``
  seconds in all; bodies that are not text (``Content-Type``) are refused.

HTML becomes Markdown (BeautifulSoup and markdownify, imported on first use);
scripts, styles and other non-content elements are dropped first.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit

from pydantic import Field

from shoal.tools.base import ToolArgs, ToolError, ToolOutput
from shoal.tools.permissions import PermissionRequest, Permissions, ToolKind

if TYPE_CHECKING:
    from shoal.tools.registry import Tool
    from shoal.tools.workspace import Workspace

NAME = "web_fetch"
DEFAULT_MAX_BYTES = 2_000_000
MAX_BYTES = 20_000_000
DEFAULT_TIMEOUT = 30.0
MAX_REDIRECTS = 5
_REDIRECTS = {301, 302, 303, 307, 308}
_TEXT_TYPES = re.compile(
    r"^(text/[\w.+-]+|application/([\w.-]+\+)?(json|xml)|application/(javascript|x-yaml|yaml"
    r"|x-sh|toml|x-toml|x-ndjson))$"
)
_WILDCARD = re.compile(r"[*?\[]")

WEB_FETCH = (
    "Fetch a web page (http or https GET) and return it as text: HTML as Markdown, other "
    "text as is. Use it for documentation, issues, release notes and the like. Pages are "
    "cut at max_bytes; binary content is refused."
)


class WebFetchArgs(ToolArgs):
    url: str = Field(min_length=1, max_length=8192)
    """The http:// or https:// address to fetch."""
    max_bytes: int | None = Field(None, ge=1, le=MAX_BYTES)
    """Read at most this many bytes of the body (default 2,000,000)."""
    timeout: float | None = Field(None, gt=0, le=300)
    """Give up after this many seconds in all, redirects included (default 30)."""


@dataclass(frozen=True)
class Page:
    url: str
    """Where the body came from (after redirects)."""
    status: int
    content_type: str
    body: bytes
    cut: bool
    """The body had more than ``max_bytes``."""
    charset: str | None


def web_fetch(permissions: Callable[[], Permissions]) -> Tool:
    """The tool, deciding redirects' hosts by ``permissions()`` (the run's mode and rules as
    they are at the call: a chat changes them between turns)."""
    from shoal.tools.registry import Tool

    def run(ws: Workspace, args: WebFetchArgs) -> ToolOutput:
        guard = Guard(permissions())
        page = fetch(
            args.url,
            max_bytes=args.max_bytes or DEFAULT_MAX_BYTES,
            timeout=args.timeout or DEFAULT_TIMEOUT,
            check=guard.check,
        )
        footer = _footer(page, args.max_bytes or DEFAULT_MAX_BYTES)
        return ToolOutput(render(page), footer=footer, ok=200 <= page.status < 300)

    return Tool(NAME, WEB_FETCH, WebFetchArgs, run, request)


def request(ws: Workspace, args: WebFetchArgs) -> PermissionRequest:
    host = _parts(args.url)[1]
    return PermissionRequest(
        NAME,
        ToolKind.NETWORK,
        host,
        (args.url,),
        f"web_fetch {args.url}",
        hint=f"; to allow this host: --allow 'web_fetch:{host}'",
    )


# --- which addresses may be reached ------------------------------------------------------


class Guard:
    """Decides each hop: its host by the run's rules, its addresses by where they are."""

    def __init__(self, permissions: Permissions) -> None:
        self.permissions = permissions
        self.first: str | None = None
        self.literal = {
            r.pattern.casefold()
            for r in permissions.rules
            if r.action == "allow"
            and r.tool == NAME
            and r.pattern
            and not _WILDCARD.search(r.pattern)
        }

    def check(self, url: str, host: str, addresses: list[str]) -> None:
        """Raise ToolError if ``url`` (on ``host``, resolved to ``addresses``) is not allowed."""
        for text in addresses:
            if not public(text) and not ({host.casefold(), text.casefold()} & self.literal):
                raise ToolError(
                    f"web_fetch: {host} is at {text}, which is not a public address "
                    "(loopback, private, link-local or reserved); refused unless an allow "
                    f"rule names it: --allow 'web_fetch:{host}'"
                )
        if self.first is None:
            self.first = host  # the toolbox decided this one (a person may have been asked)
        else:
            decision = self.permissions.decide(
                PermissionRequest(NAME, ToolKind.NETWORK, host, (url,))
            )
            if decision.action == "deny" or (decision.action == "ask" and host != self.first):
                raise ToolError(
                    f"web_fetch: the page redirected to {url}, which is not allowed "
                    f"({decision.reason}); call web_fetch on it directly if you need it"
                )


def public(text: str) -> bool:
    """Whether an IP address is on the public internet."""
    ip = ipaddress.ip_address(text.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def resolve(host: str, port: int, timeout: float) -> list[str]:
    """Every address of ``host`` (an IP literal stands for itself)."""
    try:
        return [str(ipaddress.ip_address(host))]
    except ValueError:
        pass
    pool = ThreadPoolExecutor(1)  # getaddrinfo has no timeout of its own
    try:
        found = pool.submit(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM)
        infos = found.result(timeout=max(timeout, 0.1))
    except TimeoutError:
        raise ToolError(f"web_fetch: looking up {host} took over {timeout:.0f} s") from None
    except socket.gaierror as exc:
        raise ToolError(f"web_fetch: cannot find {host} ({exc.strerror})") from None
    finally:
        pool.shutdown(wait=False)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


# --- the fetch ----------------------------------------------------------------------------


Check = Callable[[str, str, list[str]], None]


def fetch(url: str, *, max_bytes: int, timeout: float, check: Check) -> Page:
    """GET ``url``, following redirects by hand; every hop passes ``check`` first."""
    import httpx

    deadline = time.monotonic() + timeout
    with httpx.Client(trust_env=False, follow_redirects=False, verify=True) as client:
        for _ in range(MAX_REDIRECTS + 1):
            _, host, port = _parts(url)
            addresses = resolve(host, port, deadline - time.monotonic())
            check(url, host, addresses)
            try:
                page = _get(client, url, addresses[0], deadline, max_bytes)
            except httpx.TimeoutException:
                raise ToolError(f"web_fetch: {url} did not answer within {timeout:g} s") from None
            except httpx.HTTPError as exc:
                raise ToolError(f"web_fetch: {url} failed: {exc}") from None
            if isinstance(page, str):
                url = urljoin(url, page)
                continue
            return page
    raise ToolError(f"web_fetch: more than {MAX_REDIRECTS} redirects from {url}")


def _get(client: Any, url: str, address: str, deadline: float, max_bytes: int) -> Page | str:
    """One request to ``address``: the page, or where a redirect points."""
    import httpx

    parts = urlsplit(url)
    host = parts.hostname or ""
    ip = f"[{address}]" if ":" in address else address
    target = parts._replace(netloc=f"{ip}:{_parts(url)[2]}").geturl()
    remaining = max(deadline - time.monotonic(), 0.01)
    headers = {"Host": parts.netloc.rpartition("@")[2], "User-Agent": "shoal-web-fetch"}
    headers["Accept"] = "text/html, text/*;q=0.9, application/json;q=0.8, */*;q=0.1"
    extensions = {"sni_hostname": host} if parts.scheme == "https" else {}
    req = client.build_request(
        "GET", target, headers=headers, extensions=extensions, timeout=httpx.Timeout(remaining)
    )
    response = client.send(req, stream=True)
    try:
        if response.status_code in _REDIRECTS and response.headers.get("location"):
            return response.headers["location"]
        kind, _, params = response.headers.get("content-type", "").partition(";")
        kind = kind.strip().lower()
        if kind and not _TEXT_TYPES.match(kind):
            raise ToolError(f"web_fetch: {url} is {kind}, not text; only text pages are fetched")
        body, cut = _read(response, deadline, max_bytes, url)
    finally:
        response.close()
    charset = re.search(r"charset=\"?([\w.:-]+)", params)
    return Page(url, response.status_code, kind, body, cut, charset.group(1) if charset else None)


def _read(response: Any, deadline: float, max_bytes: int, url: str) -> tuple[bytes, bool]:
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_bytes(64 * 1024):
        if time.monotonic() > deadline:
            raise ToolError(f"web_fetch: {url} was still sending when the time ran out")
        chunks.append(chunk)
        size += len(chunk)
        if size > max_bytes:
            return b"".join(chunks)[:max_bytes], True
    return b"".join(chunks), False


def _parts(url: str) -> tuple[str, str, int]:
    """Scheme, host and port of an http(s) URL; ToolError for anything else."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise ToolError(f"web_fetch: {url!r} is not a valid URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ToolError(f"web_fetch: {url!r} is not an http:// or https:// URL")
    return parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80)


# --- what the model reads -----------------------------------------------------------------


def render(page: Page) -> str:
    text = page.body.decode(page.charset or "utf-8", errors="replace")
    if "\0" in text:
        raise ToolError(f"web_fetch: {page.url} is binary, not text")
    if page.content_type in ("text/html", "application/xhtml+xml") or (
        not page.content_type and "<html" in text[:2000].lower()
    ):
        text = html_to_markdown(text)
    return text.strip() + "\n"


def html_to_markdown(html: str) -> str:
    """Readable Markdown from HTML: the title, then the content without scripts and styles."""
    from bs4 import BeautifulSoup
    from markdownify import MarkdownConverter

    soup = BeautifulSoup(html, "html.parser")
    heading = soup.title.get_text(" ", strip=True) if soup.title else ""
    for tag in soup(["script", "style", "noscript", "template", "svg", "iframe", "head"]):
        tag.decompose()
    body = MarkdownConverter(heading_style="ATX", bullets="-").convert_soup(soup)
    body = re.sub(r"\n{3,}", "\n\n", body).strip()
    return f"# {heading}\n\n{body}" if heading and heading not in body[:200] else body


def _footer(page: Page, max_bytes: int) -> str:
    size = f"{len(page.body):,} bytes" + (f", cut at max_bytes={max_bytes:,}" if page.cut else "")
    return f"[{page.url}: HTTP {page.status}, {page.content_type or 'no content type'}, {size}]"
