"""``SimulatedAgent``: one osquery host speaking the TLS remote protocol.

The step methods (:meth:`enroll`, :meth:`fetch_config`, :meth:`distributed_cycle`,
:meth:`flush_logs`, :meth:`tick_schedule`) each make at most one attempt per request and never
sleep, so tests can drive them deterministically. :meth:`run` adds osquery's timing on top:
startup order, intervals, in-call retries (1 s, 4 s), enroll backoff and log backoff.

Response handling is osquery's (``TLSRequestHelper::go``): the HTTP status is ignored, an
empty body is ``{}``, a non-JSON body fails, ``"node_invalid": true`` drops the node key (the
next request re-enrolls first) and any ``error`` member fails the request.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson

from osquery_perf.logs import DEFAULT_BUFFER_MAX, DEFAULT_MAX_LINES, Backoff, LogBuffer, log_body
from osquery_perf.logs import status_line as make_status_line
from osquery_perf.queries import Answer, answer, discovery_has_rows, run_sql
from osquery_perf.schedule import Schedule, result_lines
from osquery_perf.stats import AgentStats, FleetStats
from osquery_perf.tables import Ctx
from osquery_perf.templates import HostData, Row
from osquery_perf.transport import (
    ConnectionPool,
    Headers,
    HTTPConnection,
    HttpxTransport,
    Transport,
    TransportError,
    split_url,
)

log = logging.getLogger(__name__)

API_PREFIX = "/api/osquery"
PATHS = {
    "enroll": "/enroll",
    "config": "/config",
    "distributed_read": "/distributed/read",
    "distributed_write": "/distributed/write",
    "log": "/log",
}
ACCELERATED_INTERVAL = 5.0  # distributed polling while "accelerate" is in force
CONFIG_ACCELERATED_REFRESH = 300.0  # --config_accelerated_refresh, used after a failed refresh
CONFIG_MAX_ATTEMPTS = 3  # --config_tls_max_attempts
DISTRIBUTED_MAX_ATTEMPTS = 3  # --distributed_tls_max_attempts
ENROLL_MAX_ATTEMPTS = 12  # --tls_enroll_max_attempts
ENROLL_MAX_INTERVAL = 600.0  # --tls_enroll_max_interval
NODE_KEY_HEADER_SINCE = (5, 23, 0)  # first release sending "Authorization: NodeKey"
GZIP_LEVEL = 6  # osquery uses 9; same format, far less CPU for thousands of agents


@dataclass(frozen=True, slots=True)
class CycleResult:
    """Outcome of one distributed read/execute/write round."""

    answered: tuple[str, ...]  # queries executed this round, in execution order
    accelerated: bool
    read_ok: bool
    write_ok: bool | None  # None when there was nothing to write


@dataclass(frozen=True, slots=True)
class FlushResult:
    """Outcome of one logger check."""

    results_sent: int
    statuses_sent: int
    failures: int  # log requests that failed; their lines stay buffered


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split("-")[0].split(".") if p.isdigit())


def _positive_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    return value if isinstance(value, int) and value > 0 else None


def _query_stats(ans: Answer) -> dict[str, int]:
    """Plausible resource deltas; osquery measures its own process around the query."""
    n = len(ans.rows)
    return {"wall_time_ms": 1 + n // 200 if not ans.status else 0, "user_time": n // 100,
            "system_time": n // 400, "memory": n * 48 if n >= 100 else 0}


def _empty_results() -> dict[str, dict[str, Any]]:
    return {"queries": {}, "statuses": {}, "messages": {}, "stats": {}}


def as_transport(client: Any, server_url: str) -> Transport:
    """Our own transports are used as they are; anything else is taken for an
    ``httpx.AsyncClient`` and adapted."""
    if isinstance(client, (HTTPConnection, ConnectionPool, HttpxTransport)):
        return client
    return HttpxTransport(client, split_url(server_url)[0])


class SimulatedAgent:
    """One simulated osquery host. Not thread-safe; use from one event loop.

    ``client`` is an ``httpx.AsyncClient`` (convenient in tests) or one of the fast
    transports of :mod:`osquery_perf.transport` (what the CLI uses). With ``shared``, request
    counts, errors and latencies also go to that run-wide :class:`FleetStats` (latencies
    then go only there, so nothing grows per agent)."""

    def __init__(
        self,
        server_url: str,
        enroll_secret: str,
        host: HostData,
        client: Any,
        *,
        node_key: str | None = None,
        gzip_logs: bool = False,
        policy_pass_prob: float = 0.9,
        logger_tls_max_lines: int = DEFAULT_MAX_LINES,
        buffered_log_max: int = DEFAULT_BUFFER_MAX,
        api_prefix: str = API_PREFIX,
        clock: Callable[[], float] = time.time,
        shared: FleetStats | None = None,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        self.enroll_secret = enroll_secret
        self.host = host
        self.client = client
        self.transport = as_transport(client, server_url)
        self.shared = shared
        self.node_key: str | None = node_key or None
        self.gzip_logs = gzip_logs
        self.policy_pass_prob = policy_pass_prob
        self.logger_tls_max_lines = logger_tls_max_lines
        self.stats = AgentStats()
        self.config: dict[str, Any] | None = None
        self.decorations: Row = {}
        self.schedule = Schedule()
        self.logs = LogBuffer(buffered_log_max)
        self.distributed_interval = 10.0
        self.config_interval = 60.0
        self.logger_tls_period = 10.0
        self.pack_delimiter = "_"
        self.accelerate_until = 0.0
        self.enroll_max_attempts = 1  # run() switches to osquery's 12 with backoff
        # The last enroll answer was a refusal (`node_invalid`, e.g. a wrong secret), which
        # retrying with the same secret cannot fix; the CLI stops when every host has one.
        self.enroll_refused = False
        self._clock = clock
        self._sleep = sleep  # run()'s timing; the CLI passes one shared Ticker for all hosts
        base = split_url(server_url)[1] + api_prefix
        self._paths = {name: base + path for name, path in PATHS.items()}
        self._headers = Headers({
            "Content-Type": "application/json",
            "Accept": "application/json",  # no Accept-Encoding: osquery accepts no gzip
            "User-Agent": f"osquery/{host.osquery_version}",
        })
        self._send_node_key_header = _version(host.osquery_version) >= NODE_KEY_HEADER_SINCE
        # per node key: (key, headers, gzip headers, {"node_key": key} body)
        self._auth = self._build_auth("")
        # distributed cadence, in event-loop time (see Report.behind in the CLI)
        self.distributed_due = 0.0  # when the next round should start
        self.late_max = 0.0  # worst start lateness since the reporter last looked
        self.late_sum = 0.0
        self.late_rounds = 0
        self._config_hash = ""
        self._pending: dict[str, str] = {}
        self._unsent = _empty_results()
        self._backoff = {"result": Backoff(), "status": Backoff()}
        self._enroll_lock = asyncio.Lock()

    # --- state for callers ---------------------------------------------------------------------
    @property
    def enrolled(self) -> bool:
        return bool(self.node_key)

    @property
    def accelerated(self) -> bool:
        return self._clock() < self.accelerate_until

    @property
    def has_unsent_results(self) -> bool:
        return bool(self._unsent["statuses"])

    @property
    def flags(self) -> dict[str, str]:
        """Values the ``osquery_flags`` table reports (Fleet reads them for online status)."""
        return {
            "distributed_interval": str(int(self.distributed_interval)),
            "config_tls_refresh": str(int(self.config_interval)),
            "config_refresh": str(int(self.config_interval)),
            "logger_tls_period": str(int(self.logger_tls_period)),
        }

    def _ctx(self, now: float | None = None) -> Ctx:
        return Ctx(self.host, self._clock() if now is None else now, self.flags)

    # --- transport -----------------------------------------------------------------------------
    def _fail(self, endpoint: str, reason: str) -> None:
        self.stats.errors[endpoint] += 1
        self.stats.last_error = f"{endpoint}: {reason}"
        if self.shared is not None:
            self.shared.errors[endpoint] += 1

    async def _post(self, endpoint: str, body: bytes, headers: Headers) -> dict[str, Any] | None:
        """POST and parse the reply as osquery would; None on transport or parse failure."""
        self.stats.requests[endpoint] += 1
        shared = self.shared
        if shared is not None:
            shared.requests[endpoint] += 1
        start = time.perf_counter()
        try:
            status, content = await self.transport.post(self._paths[endpoint], body, headers)
        except TransportError as exc:
            self._fail(endpoint, str(exc) or type(exc).__name__)
            return None
        if shared is None:
            self.stats.latencies.append(time.perf_counter() - start)
        else:
            shared.latency[endpoint].add(time.perf_counter() - start)
        if not content:
            return {}
        try:
            data = orjson.loads(content)
        except orjson.JSONDecodeError:
            self._fail(endpoint, f"HTTP {status}, body is not JSON")
            return None
        if not isinstance(data, dict):
            self._fail(endpoint, f"HTTP {status}, JSON root is not an object")
            return None
        return data

    def _for_key(self, key: str) -> tuple[str, Headers, Headers, bytes]:
        """Headers (plain and gzip) and the ``{"node_key"}`` body for a key, built once."""
        auth = self._auth
        if auth[0] != key:
            auth = self._auth = self._build_auth(key)
        return auth

    def _build_auth(self, key: str) -> tuple[str, Headers, Headers, bytes]:
        headers = self._headers
        if key and self._send_node_key_header:
            headers = headers.with_fields(Authorization=f"NodeKey {key}")
        gzipped = headers.with_fields(**{"Content-Encoding": "gzip"})
        return key, headers, gzipped, b'{"node_key":' + orjson.dumps(key) + b"}"

    async def _node_key(self) -> str:
        """osquery's getNodeKey(): the cached key, else enroll (serialized per host)."""
        if self.node_key:
            return self.node_key
        async with self._enroll_lock:
            attempt = 0
            while not self.node_key:
                attempt += 1
                if await self.enroll() or attempt >= self.enroll_max_attempts:
                    break
                await self._sleep(min(attempt * attempt, ENROLL_MAX_INTERVAL))
        return self.node_key or ""

    async def _go(
        self, endpoint: str, build: Callable[[str], bytes], *, gzipped: bool = False
    ) -> dict[str, Any] | None:
        """One authenticated request (``TLSRequestHelper::go``); None when it failed."""
        key = self.node_key or await self._node_key()
        auth = self._for_key(key)
        data = await self._post(endpoint, build(key), auth[2] if gzipped else auth[1])
        if data is None:
            return None
        if data.get("node_invalid") is True:
            if self.node_key == key:
                self.node_key = None
            self._fail(endpoint, "node_invalid")
            return None
        if "error" in data:
            self._fail(endpoint, f"error: {data['error']}")
            return None
        self.stats.last_success = self._clock()
        return data

    def _key_body(self, key: str) -> bytes:
        return self._for_key(key)[3]

    # --- steps ---------------------------------------------------------------------------------
    async def enroll(self) -> bool:
        """One enroll attempt; stores the node key (``node_key``, else ``id``)."""
        body = orjson.dumps({
            "enroll_secret": self.enroll_secret,
            "host_identifier": self.host.host_identifier,
            "platform_type": self.host.platform_type,
            "host_details": self.host.host_details(),
        })
        data = await self._post("enroll", body, self._headers)
        if data is None:
            return False
        key = data.get("node_key") if "node_key" in data else data.get("id")
        if not isinstance(key, str) or not key:
            # Fleet explains a refused enrollment in `error` (e.g. "invalid secret").
            error = data.get("error")
            self._fail("enroll", f"error: {error}" if error else "no node key returned")
            self.enroll_refused = data.get("node_invalid") is True
            return False
        self.enroll_refused = False
        self.node_key = key
        self.stats.enrollments += 1
        return True

    async def fetch_config(self) -> bool:
        """Fetch and apply the config; on failure the previous config stays in effect."""
        data = await self._go("config", self._key_body)
        if data is None:
            return False
        self._apply_config(data)
        return True

    def _apply_config(self, config: dict[str, Any]) -> None:
        digest = hashlib.sha1(orjson.dumps(config, option=orjson.OPT_SORT_KEYS)).hexdigest()
        if digest == self._config_hash:
            return
        self._config_hash = digest
        self.config = config
        options = config.get("options")
        if isinstance(options, dict):
            interval = _positive_int(options.get("distributed_interval"))
            self.distributed_interval = float(interval or self.distributed_interval)
            period = _positive_int(options.get("logger_tls_period"))
            self.logger_tls_period = float(period or self.logger_tls_period)
            max_lines = _positive_int(options.get("logger_tls_max_lines"))
            self.logger_tls_max_lines = max_lines or self.logger_tls_max_lines
            delimiter = options.get("pack_delimiter")
            if isinstance(delimiter, str) and delimiter:
                self.pack_delimiter = delimiter
            compress = options.get("logger_tls_compress")
            if isinstance(compress, bool):
                self.gzip_logs = compress
        self.host.osquery_info["config_hash"] = digest
        self.host.osquery_info["config_valid"] = "1"
        ctx = self._ctx()
        self.decorations = self._decorate(config.get("decorators"), ctx)
        self.schedule.load(config, ctx, self.pack_delimiter)

    @staticmethod
    def _decorate(decorators: Any, ctx: Ctx) -> Row:
        """Columns of the first row of each decorator query (load, always, interval)."""
        if not isinstance(decorators, dict):
            return {}
        queries: list[Any] = []
        for key in ("load", "always"):
            if isinstance(decorators.get(key), list):
                queries += decorators[key]
        if isinstance(decorators.get("interval"), dict):
            for group in decorators["interval"].values():
                if isinstance(group, list):
                    queries += group
        out: Row = {}
        for sql in queries:
            if isinstance(sql, str):
                rows = run_sql(sql, ctx).rows
                if rows:
                    out.update(rows[0])
        return out

    async def distributed_read(self) -> bool:
        """Read new distributed queries into the pending set (discovery applied)."""
        data = await self._go("distributed_read", self._key_body)
        if data is None:
            return False
        self._accept_work(data)
        return True

    def _accept_work(self, data: dict[str, Any]) -> None:
        queries = data.get("queries")
        discovery = data.get("discovery", {})
        if not isinstance(discovery, dict):
            return
        for name, sql in discovery.items():
            if not name or not isinstance(sql, str) or not sql:
                return  # osquery rejects the whole read
        ctx: Ctx | None = None  # built only if a discovery query must run
        if isinstance(queries, dict):
            for name, sql in queries.items():
                if not name or not isinstance(sql, str) or not sql:
                    break  # "Distributed query is not a string"; earlier ones stay stored
                check = discovery.get(name)
                if check is not None:
                    ctx = ctx or self._ctx()
                    if not discovery_has_rows(check, ctx):
                        continue
                self._pending[name] = sql
        accelerate = data.get("accelerate")
        if isinstance(accelerate, int) and not isinstance(accelerate, bool):
            self.accelerate_until = (ctx.now if ctx else self._clock()) + accelerate

    def run_pending(self) -> tuple[str, ...]:
        """Execute pending queries in name order; results wait for the next write."""
        if not self._pending:
            return ()
        ctx = self._ctx()
        names = tuple(sorted(self._pending))
        out = self._unsent
        for name in names:
            ans = answer(name, self._pending[name], ctx, policy_pass_prob=self.policy_pass_prob)
            out["queries"][name] = ans.rows
            out["statuses"][name] = ans.status
            out["messages"][name] = ans.message
            out["stats"][name] = _query_stats(ans)
            if ans.status:
                self._status(2, "distributed.cpp", 181,
                             f"Error executing distributed query: {name}: {ans.message}",
                             ctx.now)
        self._pending.clear()
        return names

    async def distributed_write(self) -> bool:
        """Send every unsent result; a failed write is merged into the next one."""
        if not self.has_unsent_results:
            return True
        sending, self._unsent = self._unsent, _empty_results()
        data = await self._go(
            "distributed_write",
            lambda key: orjson.dumps({**sending, "node_key": key}),
        )
        if data is None:
            for field, newer in self._unsent.items():
                sending[field].update(newer)
            self._unsent = sending
            return False
        return True

    async def distributed_cycle(self) -> CycleResult:
        """One read, execute, write round (single attempt per request)."""
        read_ok = await self.distributed_read()
        answered = self.run_pending()
        write_ok = await self.distributed_write() if self.has_unsent_results else None
        return CycleResult(answered, self.accelerated, read_ok, write_ok)

    def tick_schedule(self, now: float | None = None) -> list[str]:
        """Run scheduled queries that are due at ``now``; buffer their result and status
        lines. Returns the names of the queries run."""
        now = self._clock() if now is None else now
        due = self.schedule.due(now)
        if not due:
            return []
        ctx = self._ctx(now)
        for query in due:
            self._status(0, "scheduler.cpp", 83,
                         f"Executing scheduled query {query.name}: {query.sql}", now)
            ans = run_sql(query.sql, ctx)
            if ans.status:
                self._status(2, "scheduler.cpp", 116,
                             f"Error executing scheduled query {query.name}: {ans.message}", now)
                continue
            for line in result_lines(query, ans.rows, host_identifier=self.host.host_identifier,
                                     now=now, decorations=self.decorations):
                self.logs.add_result(line)
        return [q.name for q in due]

    def _status(self, severity: int, filename: str, line: int, message: str,
                now: float) -> None:
        self.logs.add_status(make_status_line(
            host_identifier=self.host.host_identifier, now=now, severity=severity,
            filename=filename, line=line, message=message, version=self.host.osquery_version,
            decorations=self.decorations,
        ))

    async def flush_logs(self) -> FlushResult:
        """One logger check: a result batch then a status batch (at most
        ``logger_tls_max_lines`` lines together). Lines leave the buffer only once the
        server accepts them; each type backs off on its own after failures."""
        results, statuses = self.logs.batches(self.logger_tls_max_lines)
        sent = {"result": 0, "status": 0}
        failures = 0
        for kind, batch, buffer in (("result", results, self.logs.results),
                                    ("status", statuses, self.logs.statuses)):
            if not batch or not self._backoff[kind].ready():
                continue
            if await self._send_logs(kind, batch):
                del buffer[: len(batch)]
                self._backoff[kind].succeeded()
                sent[kind] = len(batch)
            else:
                self._backoff[kind].failed(self.logger_tls_period)
                failures += 1
        self.logs.purge()
        return FlushResult(sent["result"], sent["status"], failures)

    async def _send_logs(self, kind: str, batch: list[bytes]) -> bool:
        compress = self.gzip_logs

        def build(key: str) -> bytes:
            body = log_body(key, kind, batch)
            return gzip.compress(body, GZIP_LEVEL, mtime=0) if compress else body

        return await self._go("log", build, gzipped=compress) is not None

    # --- the daemon ----------------------------------------------------------------------------
    async def run(
        self,
        stop_event: asyncio.Event,
        *,
        config_interval: float = 60,
        query_interval: float = 10,
        logger_tls_period: float = 10,
    ) -> None:
        """Behave like osqueryd until ``stop_event`` is set: enroll, config, then the logger,
        distributed and config-refresh loops. Config ``options`` override the intervals."""
        self.config_interval = float(config_interval)
        self.distributed_interval = float(query_interval)
        self.logger_tls_period = float(logger_tls_period)
        self.enroll_max_attempts = ENROLL_MAX_ATTEMPTS
        work = asyncio.ensure_future(self._lifecycle())
        stopper = asyncio.ensure_future(stop_event.wait())
        try:
            await asyncio.wait((work, stopper), return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
            while not work.done():  # insist: a step may absorb one cancellation
                work.cancel()
                await asyncio.wait((work,), timeout=1.0)
            await asyncio.gather(work, stopper, return_exceptions=True)
        error = None if work.cancelled() else work.exception()
        if error is not None:
            raise error

    async def _lifecycle(self) -> None:
        config_ok = await self._guarded(self._retry(self.fetch_config, CONFIG_MAX_ATTEMPTS))
        loops = [asyncio.ensure_future(self._config_loop(config_ok)),
                 asyncio.ensure_future(self._logger_loop())]
        try:
            await self._distributed_loop()
        finally:
            for task in loops:
                task.cancel()
            await asyncio.gather(*loops, return_exceptions=True)

    async def _retry(self, step: Callable[[], Awaitable[bool]], attempts: int, *,
                     done: int = 0) -> bool:
        """osquery's attempts loop: up to ``attempts`` tries, sleeping 1 s, 4 s, ... between
        failures. ``done`` tries already failed (the hot path makes the first try itself,
        which saves a coroutine per round)."""
        for attempt in range(done + 1, attempts + 1):
            if attempt > 1:
                await self._sleep((attempt - 1) ** 2)
            if await step():
                return True
        return False

    async def _guarded(self, step: Awaitable[Any]) -> bool:
        """Keep a loop alive through a simulator bug, counting it as an ``internal`` error."""
        try:
            return bool(await step)
        except Exception:
            self._internal_error()
            return False

    def _internal_error(self) -> None:
        log.exception("simulated host %s: internal error", self.host.hostname)
        self._fail("internal", "simulator bug (see log)")

    async def _config_loop(self, ok: bool) -> None:
        while True:
            await self._sleep(self.config_interval if ok else CONFIG_ACCELERATED_REFRESH)
            ok = await self._guarded(self._retry(self.fetch_config, CONFIG_MAX_ATTEMPTS))

    async def _distributed_round(self) -> bool:
        if not await self.distributed_read():
            await self._retry(self.distributed_read, DISTRIBUTED_MAX_ATTEMPTS, done=1)
        self.run_pending()
        if self.has_unsent_results and not await self.distributed_write():
            return await self._retry(self.distributed_write, DISTRIBUTED_MAX_ATTEMPTS, done=1)
        return True

    def _interval(self) -> float:
        return ACCELERATED_INTERVAL if self.accelerated else self.distributed_interval

    async def _distributed_loop(self) -> None:
        """osquery's loop: a round, then sleep the interval. For the "behind" indicator each
        round start is compared with the previous start plus the interval."""
        loop = asyncio.get_running_loop()
        while True:
            start = loop.time()
            if self.distributed_due:
                late = start - self.distributed_due
                if late > 0:
                    self.late_sum += late
                    if late > self.late_max:
                        self.late_max = late
                self.late_rounds += 1
            self.distributed_due = start + self._interval()
            try:
                await self._distributed_round()
            except Exception:
                self._internal_error()
            interval = self._interval()
            self.distributed_due = start + interval
            await self._sleep(interval)

    async def _logger_round(self) -> bool:
        self.tick_schedule()
        return (await self.flush_logs()).failures == 0

    async def _logger_loop(self) -> None:
        while True:
            try:
                await self._logger_round()
            except Exception:
                self._internal_error()
            await self._sleep(self.logger_tls_period)
