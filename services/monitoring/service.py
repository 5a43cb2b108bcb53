"""The monitoring service: folds the log into health, serves cluster-state metrics, fires and resolves alerts.

Alerts live in the log: `alert.fired.v1` / `alert.resolved.v1` on `dy.evt.alert.<fingerprint>`,
appended with the subject's expected sequence, so several instances never fire one alert twice.
Each evaluation compares what the rules say fires with what the log says fires and appends the
difference; the log, not an instance's memory, is what a restarted instance starts from.

An alert stays current as Prometheus' do: when a firing alert's annotations render differently
(they usually embed `{{ $value }}`), its `alert.fired.v1` is appended again, same fingerprint and
same `active_since`, new annotations and value. Not a new `alert.updated.v1`: every reader (the
projector, the console, this service, Alertmanager) already takes a fired event as the whole alert
replacing the one before, so they all show the current text unchanged; an integration tells a
re-fire from an update by `active_since`, which only a new firing changes. At most one such append
per alert per --alert-update-interval (counted from the last event on its subject, so it holds
across instances and restarts), and none for a value alone: the log is history, not a time series.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import time
from dataclasses import dataclass, field, replace

from nats.js.errors import NotFoundError
from prometheus_client import Counter, Gauge

from dockyard.eventlog import (
    HEARTBEAT_BUCKET,
    STREAM,
    Append,
    ConcurrencyConflict,
    EventLog,
    EventRecord,
    Metadata,
    parse_subject,
    subject_for,
)
from dockyard.schemas.events import AlertFired, AlertResolved
from dockyard.service import EXTRA_METRICS, Health
from dockyard.services.monitoring.alertmanager import Alertmanager, Notice
from dockyard.services.monitoring.builtin import Thresholds, builtin_rules
from dockyard.services.monitoring.exposition import PodLines, cluster_families, render
from dockyard.services.monitoring.health import ClusterHealth, ConsumerHealth, heartbeats_kept
from dockyard.services.monitoring.rules import Alert, Rule, adopt, evaluate, firing, update_due
from dockyard.services.monitoring.rulestate import RuleStateReporter, state_of
from dockyard.services.monitoring.snapshot import PodHealthCache, cluster_health
from dockyard.services.monitoring.tally import LogTally, parse_time, rfc3339
from dockyard.services.monitoring.userrules import RuleFile
from dockyard.services.monitoring.view import SlimView
from dockyard.view import ClusterView

log = logging.getLogger(__name__)

NEEDS_DATABASE = False
META = Metadata(actor="system:monitoring")

RULES_RELOAD_OK = Gauge("dockyard_alert_rules_reload_success",
                        "Whether the alert rule file on disk is the one in use (1) or was refused (0)")
ALERT_APPENDS = Counter("dockyard_alert_events_appended_total",
                        "Alert events this instance appended, by type (fired, updated, resolved)", ["type"])
EVALUATION_ERRORS = Counter("dockyard_alert_evaluation_errors_total", "Alert evaluations that failed")


def add_arguments(parser) -> None:
    defaults = Thresholds()
    flag = parser.add_argument
    flag("--rules", default="", help="a YAML file of alert rules in Prometheus' shape, reloaded on change")
    flag("--alertmanager-url", default=os.environ.get("DOCKYARD_ALERTMANAGER_URL", ""),
         help="post alerts to this Alertmanager's v2 API (default: $DOCKYARD_ALERTMANAGER_URL)")
    flag("--resend-interval", type=float, default=60.0, help="seconds between re-sends of firing alerts")
    flag("--eval-interval", type=float, default=5.0, help="seconds between alert rule evaluations")
    flag("--alert-update-interval", type=float, default=60.0,
         help="seconds: a firing alert whose annotations changed is appended again at most this often")
    flag("--consumer-poll", type=float, default=5.0, help="seconds between reads of the consumers' info")
    flag("--keep-firing-for", type=float, default=defaults.keep_firing_for,
         help="seconds a firing alert stays firing after its condition stops (damps flapping)")
    flag("--node-not-ready-for", type=float, default=defaults.node_not_ready_for,
         help="seconds a node is not Ready before NodeNotReady fires")
    flag("--heartbeat-grace", type=float, default=defaults.heartbeat_grace,
         help="seconds without a heartbeat after which a node counts as not Ready even if the log says Ready")
    flag("--crashloop-restarts", type=int, default=defaults.crashloop_restarts,
         help="restarts within --crashloop-window that make PodCrashLooping fire")
    flag("--crashloop-window", type=float, default=defaults.crashloop_window, help="seconds")
    flag("--pod-pending-for", type=float, default=defaults.pod_pending_for,
         help="seconds a pod may stay Pending before PodPendingTooLong fires")
    flag("--node-capacity-ratio", type=float, default=defaults.node_capacity_ratio,
         help="requested over allocatable above which NodeCapacityHigh fires")
    flag("--node-capacity-for", type=float, default=defaults.node_capacity_for, help="seconds")
    flag("--rollout-stuck-for", type=float, default=defaults.rollout_stuck_for,
         help="seconds a deployment may stay short of its rollout before DeploymentRolloutStuck fires")
    flag("--projection-lag-events", type=int, default=defaults.projection_lag_events,
         help="events behind the log above which ProjectionLagHigh fires")
    flag("--projection-lag-for", type=float, default=defaults.projection_lag_for, help="seconds")
    flag("--consumer-stalled-for", type=float, default=defaults.consumer_stalled_for,
         help="seconds a consumer with pending events may go without progress before ConsumerStalled fires")


def thresholds_from(args) -> Thresholds:
    names = Thresholds.__dataclass_fields__
    return Thresholds(**{name: getattr(args, name) for name in names if hasattr(args, name)})


@dataclass
class LoggedAlert:
    """An alert's aggregate as read from the log."""

    seq: int  # the last event on its subject
    fired: AlertFired | None = None  # while firing: the event that fired it, or its last update
    at: dt.datetime | None = None  # when the last event on its subject was appended


@dataclass
class ConsumerProgress:
    ack_floor: int = -1
    since: dt.datetime | None = None  # None while it has nothing pending


@dataclass
class Monitor:
    """The monitoring state of one instance and the rounds that act on it."""

    log: EventLog
    thresholds: Thresholds = field(default_factory=Thresholds)
    rule_file: RuleFile | None = None
    update_interval: float = 60.0  # seconds between appends of one firing alert's changed annotations
    rule_state: RuleStateReporter | None = None  # where `dockyard status` learns of a refused rule file
    alertmanager: Alertmanager | None = None
    view: ClusterView = field(default_factory=SlimView)
    tally: LogTally = field(default_factory=LogTally)
    logged: dict[str, LoggedAlert] = field(default_factory=dict)
    alerts: dict[str, Alert] = field(default_factory=dict)  # the engine's pending and firing alerts
    consumers: tuple[ConsumerHealth, ...] = ()
    progress: dict[str, ConsumerProgress] = field(default_factory=dict)
    heartbeats: dict[str, float] = field(default_factory=dict)  # node -> time.time() its heartbeat arrived
    watching_since: dt.datetime | None = None  # set once the heartbeats are watched
    loop: asyncio.AbstractEventLoop | None = None
    pods_cache: PodHealthCache = field(default_factory=PodHealthCache)
    pod_lines: PodLines = field(default_factory=PodLines)
    _generation: int = 0  # bumped when anything but the view changes what the metrics say
    _health: tuple[tuple, ClusterHealth] | None = None
    _text: tuple[tuple, list[bytes]] | None = None

    def __post_init__(self) -> None:
        self.builtin = builtin_rules(self.thresholds)

    # ------------------------------------------------------------ the log

    async def on_records(self, records: list[EventRecord]) -> None:
        pods = set()
        for record in records:
            self.tally.observe(record)
            if record.subject.startswith("dy.evt.pod."):
                pods.add(parse_subject(record.subject)[1:])
            if isinstance(record.event, (AlertFired, AlertResolved)):
                self.note_alert(record.seq, record.subject.rsplit(".", 1)[-1], record.event, record.time)
        # The view has folded the whole batch: a pod it lacks is deleted, even if a status (an agent's
        # last report) came after its deletion and made the tally count it again.
        self.tally.forget_pods(key for key in pods if key not in self.view.pods)

    def note_alert(self, seq: int, fingerprint: str, event: AlertFired | AlertResolved, time_: str) -> None:
        """Record an alert event (ours as soon as it is appended, everyone's as the view sees it)."""
        known = self.logged.get(fingerprint)
        if known is not None and known.seq >= seq:
            return
        was = known.fired if known else None
        if isinstance(event, AlertFired):
            self.logged[fingerprint] = LoggedAlert(seq, event, parse_time(time_))
        else:
            self.logged[fingerprint] = LoggedAlert(seq, at=parse_time(time_))
            if was is not None and self.alertmanager and self.view.caught_up.is_set():
                self.alertmanager.queue_resolved(Notice(was.labels, was.annotations, was.active_since,
                                                        event.resolved_at or time_))
        self._generation += 1

    def firing_in_log(self) -> dict[str, AlertFired]:
        return {fp: logged.fired for fp, logged in self.logged.items() if logged.fired is not None}

    async def watch_heartbeats(self) -> None:
        """Note when each node's heartbeat arrives: a plain subscription to the bucket's puts, the cheapest."""
        prefix = f"$KV.{HEARTBEAT_BUCKET}."

        async def arrived(msg) -> None:
            self.heartbeats[msg.subject[len(prefix):]] = time.time()

        await self.log.heartbeats()
        await self.log.nc.subscribe(prefix + ">", cb=arrived)
        self.watching_since = dt.datetime.now(dt.timezone.utc)

    def heard(self) -> dict[str, dt.datetime]:
        return {node: dt.datetime.fromtimestamp(at, dt.timezone.utc) for node, at in self.heartbeats.items()}

    # ------------------------------------------------------------ consumers

    async def poll_consumers(self, now: dt.datetime) -> None:
        """Read every durable consumer on the stream: pending counts, and whether it moved since."""
        infos, offset = [], 0
        while True:
            try:
                page = await self.log.js.consumers_info(STREAM, offset=offset)
            except NotFoundError:
                page = []
            infos += page
            offset += len(page)
            if len(page) < 256:
                break
        consumers = []
        for info in infos:
            if not info.config.durable_name:
                continue  # ephemeral readers (replays, ordered consumers) come and go
            name = info.name
            floor = info.ack_floor.stream_seq if info.ack_floor else 0
            progress = self.progress.setdefault(name, ConsumerProgress())
            pending = info.num_pending or 0
            # A stall is counted from the last progress, or from when work arrived at an idle consumer.
            if floor != progress.ack_floor:
                progress.ack_floor, progress.since = floor, now
            elif pending == 0:
                progress.since = None
            elif progress.since is None:
                progress.since = now
            consumers.append(ConsumerHealth(name=name, pending=pending, ack_pending=info.num_ack_pending or 0,
                                            last_progress=progress.since))
        consumers.sort(key=lambda c: c.name)
        self.progress = {c.name: self.progress[c.name] for c in consumers}  # deleted consumers' go
        if tuple(consumers) != self.consumers:
            self.consumers = tuple(consumers)
            self._generation += 1

    # ------------------------------------------------------------ health and metrics

    def health(self) -> ClusterHealth:
        """The current ClusterHealth, rebuilt only when the log, the consumers or the alerts moved."""
        key = (self.view.position, self._generation)
        if self._health is None or self._health[0] != key:
            counts: dict[tuple[str, str], int] = {}
            for fired in self.firing_in_log().values():
                counts[(fired.alertname, fired.severity)] = counts.get((fired.alertname, fired.severity), 0) + 1
            self._health = (key, cluster_health(self.view, self.tally, self.consumers, counts, self.pods_cache))
        return self._health[1]

    async def metrics_text_async(self) -> list[bytes]:
        health = self.health()
        key = (self.view.position, self._generation)
        if self._text is None or self._text[0] != key:
            self._text = None  # let the old text go before the new one is built: 30 MB at 50,000 pods
            self._text = (key, render(cluster_families(health, self.pod_lines)))
        return self._text[1]

    def metrics_text(self) -> list[bytes]:
        """For the /metrics thread: rendered on the event loop, where the view is not changing under it."""
        if self.loop is None:
            return []
        return asyncio.run_coroutine_threadsafe(self.metrics_text_async(), self.loop).result(timeout=60)

    # ------------------------------------------------------------ alerts

    def rules(self) -> tuple[Rule, ...]:
        return self.builtin + (self.rule_file.rules if self.rule_file else ())

    def reload_rules(self) -> None:
        if self.rule_file is None:
            return
        taken = self.rule_file.reload_if_changed()
        if taken is True:
            RULES_RELOAD_OK.set(1)
            log.info("alert rules loaded from %s: %d rule(s)", self.rule_file.path, len(self.rule_file.rules))
        elif taken is False:
            RULES_RELOAD_OK.set(0)
            log.error("alert rules refused, %s; the %d rule(s) loaded before stay in use",
                      self.rule_file.error, len(self.rule_file.rules))

    async def report_rules(self, monotonic: float) -> None:
        """Tell `dockyard status` whether the rule file is in use; a failure waits for the next round."""
        if self.rule_file is None or self.rule_state is None:
            return
        try:
            await self.rule_state.report(state_of(self.rule_file), monotonic)
        except Exception as exc:  # status reads a stale entry for a while; alerts go on
            log.warning("could not report the rule file's state for `dockyard status`: %s", exc)

    async def evaluate_once(self, now: dt.datetime) -> None:
        """One round: evaluate the rules, then append what the log lacks (fired) or has too many of (resolved)."""
        self.reload_rules()
        self.alerts = adopt(self.alerts, [self._alert_of(fp, e) for fp, e in self.firing_in_log().items()], now)
        self.heartbeats = heartbeats_kept(self.heartbeats, self.view.nodes, now.timestamp(),
                                          self.thresholds.heartbeat_grace)
        health = replace(self.health(), heartbeats=self.heard(), watching_since=self.watching_since)
        self.alerts = evaluate(self.rules(), health, now, self.alerts)
        await self.append_differences(now)

    def _alert_of(self, fingerprint: str, fired: AlertFired) -> Alert:
        since = parse_time(fired.active_since) or dt.datetime.now(dt.timezone.utc)
        return Alert(fingerprint=fingerprint, alertname=fired.alertname, severity=fired.severity,
                     labels=dict(fired.labels), annotations=dict(fired.annotations), value=fired.value,
                     active_since=since, last_held=since, firing=True)

    async def append_differences(self, now: dt.datetime) -> None:
        wanted, logged = firing(self.alerts), self.firing_in_log()
        stamp = rfc3339(now)
        appends = []
        for fp, alert in wanted.items():
            if fp not in logged:
                appends.append((fp, _fired_event(alert, rfc3339(alert.active_since))))
            elif update_due(alert, logged[fp].annotations, self.logged[fp].at, now, self.update_interval):
                appends.append((fp, _fired_event(alert, logged[fp].active_since)))  # the same firing, current
        for fp, fired in logged.items():
            if fp not in wanted:
                appends.append((fp, AlertResolved(alertname=fired.alertname, labels=dict(fired.labels),
                                                  resolved_at=stamp)))
        if not appends:
            return
        batch = []
        for fp, event in appends:
            expected = self.logged[fp].seq if fp in self.logged else 0
            batch.append(Append(subject=subject_for("alert", "", fp), event=event, expected_seq=expected,
                                msg_id=f"alert-{fp}-{expected}"))
        results = await self.log.append_many(batch, META)
        for (fp, event), result in zip(appends, results):
            if isinstance(result, int):
                verb = _verb(event, fp in logged)
                ALERT_APPENDS.labels(verb).inc()
                log.log(logging.DEBUG if verb == "updated" else logging.INFO, "alert %s %s %s",
                        event.alertname, verb, event.labels)
                self.note_alert(result, fp, event, stamp)
            elif isinstance(result, ConcurrencyConflict):
                log.debug("alert %s moved on in the log (another instance): deciding again next round", fp)
            else:
                log.warning("appending %s for alert %s failed: %s", event.type_name(), fp, result)

    async def notify(self, now: dt.datetime) -> None:
        if self.alertmanager is None:
            return
        notices = {fp: Notice(fired.labels, fired.annotations, fired.active_since)
                   for fp, fired in self.firing_in_log().items()}
        await self.alertmanager.send(notices, now, time.monotonic())

    # ------------------------------------------------------------ loops

    async def keep_evaluating(self, stop: asyncio.Event, interval: float, consumer_poll: float) -> None:
        await _until(stop, self.view.caught_up.wait())
        polled = 0.0
        while not stop.is_set():
            now = dt.datetime.now(dt.timezone.utc)
            try:
                if time.monotonic() - polled >= consumer_poll:
                    await self.poll_consumers(now)
                    polled = time.monotonic()
                await self.evaluate_once(now)
                await self.notify(now)
            except Exception:
                EVALUATION_ERRORS.inc()
                log.exception("alert evaluation failed; the next round tries again")
            await self.report_rules(time.monotonic())
            await _until(stop, asyncio.sleep(interval))


def _fired_event(alert: Alert, active_since: str) -> AlertFired:
    return AlertFired(alertname=alert.alertname, severity=alert.severity, labels=alert.labels,
                      annotations=alert.annotations, active_since=active_since, value=alert.value)


def _verb(event: AlertFired | AlertResolved, was_firing: bool) -> str:
    if isinstance(event, AlertResolved):
        return "resolved"
    return "updated" if was_firing else "fired"


async def _quietly(awaitable, what: str) -> None:
    """Shutdown chores: one that fails is logged, and the rest still run."""
    try:
        await awaitable
    except Exception as exc:
        log.warning("%s failed: %s", what, exc)


async def _until(stop: asyncio.Event, awaitable) -> None:
    """Await `awaitable` unless `stop` is set first."""
    task = asyncio.ensure_future(awaitable)
    stopper = asyncio.ensure_future(stop.wait())
    await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    for pending in (task, stopper):
        pending.cancel()


def monitor_from(log_: EventLog, args) -> Monitor:
    rule_file = RuleFile(args.rules, args.keep_firing_for) if args.rules else None
    alertmanager = Alertmanager(args.alertmanager_url, args.resend_interval) if args.alertmanager_url else None
    return Monitor(log_, thresholds_from(args), rule_file, update_interval=args.alert_update_interval,
                   alertmanager=alertmanager)


async def run(nats_url: str, database_url: str, stop: asyncio.Event, health: Health, args=None) -> None:
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per post to Alertmanager
    log_ = await EventLog.connect(nats_url, name="dockyard-monitoring")
    await log_.ensure_streams()
    monitor = monitor_from(log_, args)
    monitor.loop = asyncio.get_running_loop()
    monitor.rule_state = RuleStateReporter(log_.js) if monitor.rule_file else None
    monitor.reload_rules()
    EXTRA_METRICS.append(monitor.metrics_text)
    await monitor.watch_heartbeats()
    tasks = [
        asyncio.create_task(monitor.view.follow(log_, stop, monitor.on_records)),
        asyncio.create_task(monitor.keep_evaluating(stop, args.eval_interval, args.consumer_poll)),
    ]
    await _until(stop, monitor.view.caught_up.wait())
    await monitor.metrics_text_async()  # build every pod's lines now, so no scrape pays for all of them at once
    health.ready = True
    log.info("monitoring caught up at seq %s; %d rule(s)", monitor.view.position, len(monitor.rules()))
    await stop.wait()
    await asyncio.gather(*tasks, return_exceptions=True)
    if monitor.alertmanager:
        await monitor.alertmanager.close()
    if monitor.rule_state:
        await _quietly(monitor.rule_state.withdraw(), "withdrawing the rule file's state")
    EXTRA_METRICS.remove(monitor.metrics_text)
    await log_.close()
