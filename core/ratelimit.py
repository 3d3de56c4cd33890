"""Rate limits: how many requests a credential, and a client address, may make per window.

The policies, each a `limits` rate ("600/minute") over a sliding window counter:
- `credential`: per access-token subject (the person, whichever session) or per API key;
- `ip`: per client address (an IPv6 client per /64, which one subscriber usually holds);
- `signin`: per client address, on signing up and signing in only — much stricter;
- `public`: per client address, on the public pages' forms — as strict, a bucket of its own;
- `target`: per public booking page, the bookings made there (`check_target`, `count_booking`).

Counters live where `rate_limit_storage` says: per process in memory by default (a deployment
of N processes allows N times the rate), or a shared `limits` store (`async+redis://...`).
Nothing here touches PostgreSQL: a limit must hold when the database is the thing under load.

The client address is the peer's, unless the peer is a configured trusted proxy: then the
rightmost `X-Forwarded-For` entry that is not itself a trusted proxy. `X-Forwarded-For` from
anyone else is ignored, so by default it is never believed.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache

from limits import RateLimitItem, RateLimitItemPerSecond, parse
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.storage import MemoryStorage, storage_from_string

from core.config import Settings
from core.credentials import Tokens, bearer_from_header, parse_api_key
from core.errors import DomainError, RateLimited
from core.metrics import RATE_LIMIT_REFUSALS
from core.observability import get_logger

__all__ = [
    "Policy",
    "RateLimits",
    "Standing",
    "Verdict",
    "client_address",
    "parse_rate",
    "policy_header",
    "state_header",
]

log = get_logger("atlilith.ratelimit")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_rate(value: str) -> RateLimitItem:
    """One `limits` rate such as "600/minute" or "10 per 1 minute"."""
    return parse(value)


@dataclass(frozen=True)
class Policy:
    name: str
    item: RateLimitItem
    # Derived once from `item`: read on every request (keys, headers), rebuilt there before.
    quota: int = field(init=False, compare=False)
    window: int = field(init=False, compare=False)
    declared: str = field(init=False, repr=False, compare=False)
    _around: tuple[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        quota, window = int(self.item.amount), int(self.item.get_expiry())
        object.__setattr__(self, "quota", quota)
        object.__setattr__(self, "window", window)
        object.__setattr__(self, "declared", f'"{self.name}";q={quota};w={window}')
        prefix, suffix = self.item.key_for(self.name, "\0").split("\0")
        object.__setattr__(self, "_around", (prefix, suffix))

    def key(self, identity: str) -> str:
        """The counter's key for `identity`, spelled as `item.key_for(name, identity)` does."""
        prefix, suffix = self._around
        return prefix + identity + suffix


@dataclass(frozen=True)
class Standing:
    """One policy's state after this request: quota units left and seconds until it is whole."""

    policy: Policy
    remaining: int
    reset: int


@dataclass(frozen=True)
class Verdict:
    standings: tuple[Standing, ...]
    refused: Standing | None = None

    @property
    def allowed(self) -> bool:
        return self.refused is None

    def error(self) -> DomainError:
        assert self.refused is not None
        refused = self.refused
        wait = max(1, refused.reset)
        return RateLimited(
            f"too many requests ({refused.policy.name} limit: {refused.policy.quota} per "
            f"{refused.policy.window} s)",
            hint=f"wait {wait} s before retrying (Retry-After); pace requests by the RateLimit header",
            extra={"retry_after": wait, "policy": refused.policy.name},
        )


# The default storage: counters in this process's memory.
_MEMORY_STORAGE = "async+memory://"
# How often the in-process counters drop the windows that have expired.
_SWEEP_SECONDS = 1.0


class _LoopMemoryStorage(MemoryStorage):
    """`limits`' synchronous in-memory storage, used from the event loop's thread only.

    Its counters are plain in-memory work, so the synchronous strategy answers a hit without
    the async storage's layers (a coroutine per storage call, an `asyncio.Lock` per key, a task
    per hit to sweep expired keys). The storage's own sweep runs on a `threading.Timer` it
    restarts every 10 ms under load, and `Thread.start()` blocks the event loop until the new
    thread runs (~2 ms on a loaded machine): here the sweep runs inline instead, at most once a
    second. A key read after its expiry is dropped by `get` as before; the sweep only bounds
    the memory of keys never read again (clients that went away)."""

    def __init__(self) -> None:
        super().__init__()
        self.timer.cancel()  # started by MemoryStorage.__init__; nothing restarts it (below)
        self._swept = time.time()

    def hit_standing(
        self, key: str, limit: int, expiry: int, *, count: bool = True
    ) -> tuple[bool, int, float]:
        """One request counted against `key`'s sliding window counter, as the strategy's `hit`
        followed by its `get_window_stats` would: whether it was allowed, the quota left and
        the seconds until a unit comes back. One pass over the counters at one instant, instead
        of the library's two passes through its layers (each re-deriving the keys and counts).
        No lock: only the event loop's thread calls it, and nothing awaits in between.
        `count=False` answers as the strategy's `test` would: whether a hit would be allowed,
        nothing counted."""
        now = time.time()
        previous_key = f"{key}/{int((now - expiry) / expiry)}"
        current_key = f"{key}/{int(now / expiry)}"
        previous = self._live(previous_key, now)
        current = self._live(current_key, now)
        previous_ttl = (1 - (((now - expiry) / expiry) % 1)) * expiry if previous else 0.0
        carried = previous * previous_ttl / expiry
        allowed = math.floor(carried + current) + 1 <= limit
        if allowed and count:
            self._MemoryStorage__schedule_expiry()
            current = self.storage[current_key] = current + 1
            if current == 1:  # a fresh window: it lives twice its length, as `incr` sets it
                self.expirations[current_key] = now + 2 * expiry
        remaining = max(0, limit - math.floor(carried + current))
        reset_in = math.inf
        if previous:
            reset_in = previous_ttl % (expiry / previous)
        if current:
            current_ttl = (1 - ((now / expiry) % 1)) * expiry + expiry
            reset_in = min(reset_in, current_ttl % expiry)
        return allowed, remaining, 0.0 if reset_in == math.inf else reset_in

    def _live(self, key: str, now: float) -> int:
        """`get` without its error-wrapping layers: the count, or 0 once expired (dropped)."""
        if self.expirations.get(key, 0) <= now:
            self.storage.pop(key, None)
            self.expirations.pop(key, None)
            self.locks.pop(key, None)
            return 0
        return self.storage.get(key, 0)

    def _MemoryStorage__schedule_expiry(self) -> None:  # replaces MemoryStorage's private timer hook
        now = time.time()
        if now - self._swept < _SWEEP_SECONDS:
            return
        self._swept = now
        for key, expires in list(self.expirations.items()):
            if expires <= now:
                self.get(key)  # drops the expired counter


def _networks(values: Iterable[str]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(v.strip(), strict=False) for v in values if v.strip())


def _address(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(value.strip().strip("[]"))
    except ValueError:
        return None


def client_address(peer: str | None, forwarded_for: str | None, trusted: tuple[Network, ...]) -> str:
    """The address a request is counted under (see the module docstring)."""
    peer_ip = _address(peer or "")
    if peer_ip is None:
        return peer or "unknown"
    chosen = peer_ip
    if forwarded_for and any(peer_ip in net for net in trusted):
        # Each trusted proxy appends what it saw; the rightmost untrusted hop is the client.
        for hop in reversed(forwarded_for.split(",")):
            hop_ip = _address(hop)
            if hop_ip is None:
                break
            chosen = hop_ip
            if not any(hop_ip in net for net in trusted):
                break
    if isinstance(chosen, ipaddress.IPv6Address):
        if chosen.ipv4_mapped is not None:
            return str(chosen.ipv4_mapped)
        return str(ipaddress.IPv6Network((chosen, 64), strict=False))
    return str(chosen)


# The same few peers (a proxy, a client's keep-alive connections) send most requests: parsing
# their addresses with `ipaddress` on every request cost more than the rest of the address rule.
_remembered_address = lru_cache(maxsize=4096)(client_address)


class RateLimits:
    """The limiter of one process (or of every process sharing its storage)."""

    def __init__(self, settings: Settings, tokens: Tokens) -> None:
        self.enabled = settings.rate_limit_enabled
        self.tokens = tokens
        self.trusted = _networks(settings.trusted_proxies)
        self.credential = Policy("credential", parse_rate(settings.rate_limit_per_credential))
        self.ip = Policy("ip", parse_rate(settings.rate_limit_per_ip))
        self.signin = Policy("signin", parse_rate(settings.rate_limit_signin_per_ip))
        # The public pages' forms, in a bucket of their own: a client booking and a provider
        # signing in from one address do not spend each other's.
        self.public = Policy("public", parse_rate(settings.rate_limit_public_per_ip))
        self.target = Policy("target", parse_rate(settings.rate_limit_public_per_target))
        # One unit per booking and window: a booking counts against its page once, however
        # often its form is resent (an idempotent replay answers with the same booking).
        self.counted = Policy("counted", RateLimitItemPerSecond(1, self.target.window))
        self._limiter: SlidingWindowCounterRateLimiter | None = None
        self._memory: _LoopMemoryStorage | None = None
        if settings.rate_limit_storage == _MEMORY_STORAGE:
            self._memory = _LoopMemoryStorage()
        else:
            self._limiter = SlidingWindowCounterRateLimiter(storage_from_string(settings.rate_limit_storage))

    def address(self, peer: str | None, forwarded_for: str | None) -> str:
        return _remembered_address(peer, forwarded_for, self.trusted)

    def credential_key(self, authorization: str | None) -> str | None:
        """Whose credential this is, without the database: an access token's subject when its
        signature holds, or a digest of an API key (one key, one bucket). Anything else counts
        against its address only, so a forged credential cannot drain someone else's quota."""
        raw = bearer_from_header(authorization)
        if not raw:
            return None
        if parse_api_key(raw) is not None:
            return "key:" + hashlib.sha256(raw.encode()).hexdigest()[:32]
        try:
            return f"person:{self.tokens.decode(raw).person_id}"
        except DomainError:
            return None

    async def check(
        self, *, address: str, authorization: str | None, signin: bool = False, public: bool = False
    ) -> Verdict:
        """Count this request against every policy that applies, in order; the first exhausted
        one refuses it (and the later ones are not counted). `signin`: a password tried or an
        account made; `public`: a public page's form posted."""
        buckets: list[tuple[Policy, str]] = []
        if signin:
            buckets.append((self.signin, address))
        if public:
            buckets.append((self.public, address))
        buckets.append((self.ip, address))
        key = self.credential_key(authorization)
        if key is not None:
            buckets.append((self.credential, key))
        standings: list[Standing] = []
        for policy, identity in buckets:
            allowed, standing = await self._hit(policy, identity)
            standings.append(standing)
            if not allowed:
                RATE_LIMIT_REFUSALS.labels(policy=policy.name).inc()
                log.info("rate_limited", policy=policy.name)
                return Verdict(tuple(standings), refused=standing)
        return Verdict(tuple(standings))

    async def check_target(self, target: str) -> Verdict:
        """Whether the page `target` still takes bookings, nothing counted: only bookings made
        count against it (`count_booking`), so attempts core refuses (a time never offered, a
        form with mistakes) cannot close a provider's page. A botnet spread over many addresses
        still cannot fill one provider's calendar: its real bookings count."""
        if not self.enabled:
            return Verdict(())
        allowed, standing = await self._standing(self.target, target)
        if not allowed:
            RATE_LIMIT_REFUSALS.labels(policy=self.target.name).inc()
            log.info("rate_limited", policy=self.target.name)
            return Verdict((standing,), refused=standing)
        return Verdict((standing,))

    async def count_booking(self, target: str, booking: str) -> None:
        """Count the booking `booking`, just made (or replayed) on the page `target`, once."""
        if not self.enabled:
            return
        first, _ = await self._hit(self.counted, booking)
        if first:
            await self._hit(self.target, target)

    async def _standing(self, policy: Policy, identity: str) -> tuple[bool, Standing]:
        """Whether one more request would be allowed under `policy`, and its standing, without
        counting it."""
        if self._memory is not None:
            allowed, remaining, reset_in = self._memory.hit_standing(
                policy.key(identity), policy.quota, policy.window, count=False
            )
            return allowed, Standing(policy, remaining, max(0, math.ceil(reset_in)))
        assert self._limiter is not None
        allowed = await self._limiter.test(policy.item, policy.name, identity)
        stats = await self._limiter.get_window_stats(policy.item, policy.name, identity)
        return allowed, Standing(policy, stats.remaining, max(0, math.ceil(stats.reset_time - time.time())))

    async def _hit(self, policy: Policy, identity: str) -> tuple[bool, Standing]:
        """Count one request against `policy` for `identity`: whether it was allowed, and the
        policy's standing after it."""
        if self._memory is not None:
            allowed, remaining, reset_in = self._memory.hit_standing(
                policy.key(identity), policy.quota, policy.window
            )
            return allowed, Standing(policy, remaining, max(0, math.ceil(reset_in)))
        assert self._limiter is not None
        allowed = await self._limiter.hit(policy.item, policy.name, identity)
        stats = await self._limiter.get_window_stats(policy.item, policy.name, identity)
        return allowed, Standing(policy, stats.remaining, max(0, math.ceil(stats.reset_time - time.time())))


def policy_header(standings: Iterable[Standing]) -> str:
    """`RateLimit-Policy` (draft-ietf-httpapi-ratelimit-headers): quota and window per policy."""
    return ", ".join(s.policy.declared for s in standings)


def state_header(standings: Iterable[Standing]) -> str:
    """`RateLimit`: what is left of each policy's quota and in how many seconds it is whole."""
    return ", ".join(f'"{s.policy.name}";r={s.remaining};t={s.reset}' for s in standings)
