//! Prometheus metrics (`/metrics`, the text exposition format) with the official
//! `prometheus-client` crate: decisions by outcome and reason code, decision and request
//! latency, verifications, overload refusals, connections (open, the cap, closed by cause,
//! waits at the cap, accept errors), and (read at scrape time) the log's size, group-commit
//! batch sizes, the active bundle, the shadow bundle's evaluations and disagreements, and
//! the verification loop.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric as _, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use writ_engine::{Decision, Engine};

/// Labels of decisions (`outcome`, `reason`) and of verifications (`result`, `reason`):
/// static strings, so that counting allocates nothing.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    outcome: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VerificationLabels {
    result: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusedLabels {
    why: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClosedLabels {
    cause: &'static str,
}

/// Latency buckets, in seconds: 50 µs to 5 s.
const LATENCY_BUCKETS: [f64; 16] =
    [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

/// The server's metrics.
pub struct Metrics {
    registry: Registry,
    decisions: Family<DecisionLabels, Counter>,
    decision_seconds: Histogram,
    verifications: Family<VerificationLabels, Counter>,
    requests: Family<RequestLabels, Counter>,
    request_seconds: Family<RouteLabels, Histogram>,
    refused: Family<RefusedLabels, Counter>,
    connections_open: Gauge,
    connections_accepted: Counter,
    connections_closed: Family<ClosedLabels, Counter>,
    connection_cap_waits: Counter,
    accept_errors: Counter,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

impl Metrics {
    /// Metrics of a server over `engine`.
    pub fn new(engine: Arc<Engine>, limits: &crate::Limits) -> Metrics {
        let mut registry = Registry::default();
        let decisions = Family::<DecisionLabels, Counter>::default();
        registry.register(
            "writ_decisions",
            "Authorization decisions by outcome and primary reason code",
            decisions.clone(),
        );
        let decision_seconds = latency_histogram();
        registry.register(
            "writ_decision_duration_seconds",
            "Time to decide, record durably and sign, per authorization",
            decision_seconds.clone(),
        );
        let verifications = Family::<VerificationLabels, Counter>::default();
        registry.register("writ_verifications", "Writ verifications by result and reason code", verifications.clone());
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register("writ_http_requests", "HTTP requests by route and status", requests.clone());
        let request_seconds =
            Family::<RouteLabels, Histogram>::new_with_constructor(latency_histogram as fn() -> Histogram);
        registry.register(
            "writ_http_request_duration_seconds",
            "HTTP request latency by route",
            request_seconds.clone(),
        );
        let refused = Family::<RefusedLabels, Counter>::default();
        registry.register("writ_http_refused", "Requests refused at the edge (overload, timeout)", refused.clone());
        let connections_open = Gauge::default();
        registry.register("writ_http_connections_open", "HTTP connections open now", connections_open.clone());
        let connections_max = Gauge::<i64>::default();
        connections_max.set(i64::try_from(limits.max_connections).unwrap_or(i64::MAX));
        registry.register(
            "writ_http_connections_max",
            "The cap on open HTTP connections (limits.max_connections)",
            connections_max,
        );
        let connections_accepted = Counter::default();
        registry.register("writ_http_connections_accepted", "HTTP connections accepted", connections_accepted.clone());
        let connections_closed = Family::<ClosedLabels, Counter>::default();
        registry.register(
            "writ_http_connections_closed",
            "HTTP connections closed, by cause: done (by the client or after Connection: close), header_timeout, idle_timeout, response_timeout, cap (no request in progress, closed to make room at the cap), stop (no request begun at a stop), dropped (open after a stop's drain)",
            connections_closed.clone(),
        );
        let connection_cap_waits = Counter::default();
        registry.register(
            "writ_http_connection_cap_waits",
            "Connections accepted with every slot taken: the connection waiting longest with no request in progress is closed to make room (cause cap), or, if every one is in a request, the new one waits for a slot (and later ones in the listen backlog)",
            connection_cap_waits.clone(),
        );
        let accept_errors = Counter::default();
        registry.register(
            "writ_http_accept_errors",
            "Failed accepts (such as EMFILE: out of file descriptors)",
            accept_errors.clone(),
        );
        registry.register_collector(Box::new(EngineCollector { engine }));
        Metrics {
            registry,
            decisions,
            decision_seconds,
            verifications,
            requests,
            request_seconds,
            refused,
            connections_open,
            connections_accepted,
            connections_closed,
            connection_cap_waits,
            accept_errors,
        }
    }

    /// Counts one decision and its latency.
    pub fn decision(&self, d: &Decision, took: Duration) {
        let outcome = match (d.outcome, &d.writ) {
            (writ_engine::Outcome::Allow, Some(_)) => "allow",
            (writ_engine::Outcome::Pending, None) => "pending",
            _ => "deny",
        };
        let reason = d.reason().map_or("", |r| r.as_str());
        self.decisions.get_or_create(&DecisionLabels { outcome, reason }).inc();
        self.decision_seconds.observe(took.as_secs_f64());
    }

    /// Counts one verification.
    pub fn verification(&self, ok: bool, reason: &'static str) {
        let result = if ok { "ok" } else { "rejected" };
        self.verifications.get_or_create(&VerificationLabels { result, reason }).inc();
    }

    /// Counts one HTTP request.
    pub fn request(&self, route: &str, status: u16, took: Duration) {
        self.requests.get_or_create(&RequestLabels { route: route.to_owned(), status }).inc();
        self.request_seconds.get_or_create(&RouteLabels { route: route.to_owned() }).observe(took.as_secs_f64());
    }

    /// Counts one request refused at the edge (`overload` or `timeout`).
    pub fn refused(&self, why: &'static str) {
        self.refused.get_or_create(&RefusedLabels { why }).inc();
    }

    /// Counts one accepted connection, open until [`Metrics::connection_closed`].
    pub(crate) fn connection_opened(&self) {
        self.connections_accepted.inc();
        self.connections_open.inc();
    }

    /// Counts one connection closed, and why (`crate::conn::Closed`).
    pub(crate) fn connection_closed(&self, cause: &'static str) {
        self.connections_open.dec();
        self.connections_closed.get_or_create(&ClosedLabels { cause }).inc();
    }

    /// Counts one wait of the accept loop for a free connection slot.
    pub(crate) fn connection_cap_reached(&self) {
        self.connection_cap_waits.inc();
    }

    /// Counts one failed accept.
    pub(crate) fn accept_error(&self) {
        self.accept_errors.inc();
    }

    /// The exposition text.
    pub fn render(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// What is read from the engine at scrape time.
#[derive(Debug)]
struct EngineCollector {
    engine: Arc<Engine>,
}

impl Collector for EngineCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let log = self.engine.log();
        let size = ConstGauge::new(i64::try_from(log.size()).unwrap_or(i64::MAX));
        size.encode(encoder.encode_descriptor("writ_log_entries", "Entries in the log", None, MetricType::Gauge)?)?;
        let checkpointed = log.latest_checkpoint().map_or(0, |c| c.checkpoint().size);
        let checkpointed = ConstGauge::new(i64::try_from(checkpointed).unwrap_or(i64::MAX));
        checkpointed.encode(encoder.encode_descriptor(
            "writ_log_checkpoint_size",
            "Tree size of the newest signed checkpoint",
            None,
            MetricType::Gauge,
        )?)?;
        let stats = log.stats();
        // Per-bucket counts (the encoder accumulates); the last bucket also holds the larger
        // commits, so it is the +Inf bucket.
        let mut buckets = Vec::with_capacity(stats.batch_sizes.len());
        let mut below = 0;
        let last = stats.batch_sizes.len().saturating_sub(1);
        for (i, (bound, cumulative)) in stats.batch_sizes.iter().enumerate() {
            let upper = if i == last { f64::INFINITY } else { *bound as f64 };
            buckets.push((upper, cumulative.saturating_sub(below)));
            below = *cumulative;
        }
        let mut hist = encoder.encode_descriptor(
            "writ_log_commit_batch_entries",
            "Entries per durable group commit",
            None,
            MetricType::Histogram,
        )?;
        hist.encode_histogram::<NoLabelSet>(stats.entries as f64, stats.batches, &buckets, None)?;
        let mut below = 0;
        let durations: Vec<(f64, u64)> = stats
            .commit_seconds
            .iter()
            .map(|(upper, cumulative)| {
                let here = cumulative.saturating_sub(below);
                below = *cumulative;
                (*upper, here)
            })
            .collect();
        let mut hist = encoder.encode_descriptor(
            "writ_log_commit_seconds",
            "Duration of each durable group commit (tree update, write, fsync, checkpoint when due)",
            None,
            MetricType::Histogram,
        )?;
        hist.encode_histogram::<NoLabelSet>(stats.commit_seconds_sum, below, &durations, None)?;
        let failed = ConstGauge::new(i64::try_from(stats.failed_batches).unwrap_or(i64::MAX));
        failed.encode(encoder.encode_descriptor(
            "writ_log_failed_commits",
            "Group commits that failed (their appenders were denied)",
            None,
            MetricType::Gauge,
        )?)?;
        ConstCounter::new(self.engine.anonymous_unrecorded()).encode(encoder.encode_descriptor(
            "writ_anonymous_unrecorded",
            "Requests without a verified identity denied beyond the anonymous record budget, counted in anonymous_attempts entries instead of one record each",
            None,
            MetricType::Counter,
        )?)?;
        ConstCounter::new(self.engine.shadow().evaluated).encode(encoder.encode_descriptor(
            "writ_shadow_evaluations",
            "Decisions evaluated under the shadow bundle beside the active one (and recorded), since the server started",
            None,
            MetricType::Counter,
        )?)?;
        let mut disagreements = encoder.encode_descriptor(
            "writ_shadow_disagreements",
            "Decisions whose outcome under the shadow bundle differed from the real one (each recorded on its decision entry), by the active bundle's and the shadow's outcome, since the server started",
            None,
            MetricType::Counter,
        )?;
        for (active, shadow, n) in self.engine.shadow_disagreements() {
            let labels: Vec<(&str, &str)> = vec![("active", outcome_label(active)), ("shadow", outcome_label(shadow))];
            ConstCounter::new(n).encode(disagreements.encode_family(&labels)?)?;
        }
        let isolations = self.engine.isolations();
        let mut family = encoder.encode_descriptor(
            "writ_isolations",
            "Identities isolated automatically by an isolation rule of the active bundle, by rule, since the start",
            None,
            MetricType::Counter,
        )?;
        for (rule, n) in isolations {
            let labels: Vec<(&str, String)> = vec![("rule", rule)];
            ConstCounter::new(n).encode(family.encode_family(&labels)?)?;
        }
        let mut info = encoder.encode_descriptor(
            "writ_active_bundle",
            "The active policy bundle (value 1; none when no bundle is active)",
            None,
            MetricType::Gauge,
        )?;
        if let Some((name, version, digest)) = self.engine.active_bundle() {
            let labels: Vec<(&str, String)> =
                vec![("name", name), ("version", version), ("digest", digest.to_string())];
            ConstGauge::new(1i64).encode(info.encode_family(&labels)?)?;
        }
        self.encode_verification(&mut encoder)
    }
}

impl EngineCollector {
    /// The verification loop's state and runs (`writ_engine::Engine::verify_now`).
    fn encode_verification(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let status = self.engine.verification();
        let stats = self.engine.verification_stats();
        let ok = i64::from(status.state != writ_engine::VerificationState::Failed);
        ConstGauge::new(ok).encode(encoder.encode_descriptor(
            "writ_verification_ok",
            "1 unless the last run of the verification loop failed (then every decision is denied)",
            None,
            MetricType::Gauge,
        )?)?;
        let mut runs = encoder.encode_descriptor(
            "writ_verification_runs",
            "Runs of the verification loop, by result",
            None,
            MetricType::Counter,
        )?;
        for (result, n) in [("ok", stats.runs_ok), ("failed", stats.runs_failed)] {
            ConstCounter::new(n).encode(runs.encode_family(&[("result", result)])?)?;
        }
        let last = i64::try_from(status.last_run.unwrap_or(0)).unwrap_or(i64::MAX);
        ConstGauge::new(last).encode(encoder.encode_descriptor(
            "writ_verification_last_run_timestamp_seconds",
            "When the last run of the verification loop ended (Unix seconds; 0: none yet)",
            None,
            MetricType::Gauge,
        )?)?;
        let mut below = 0;
        let buckets: Vec<(f64, u64)> = stats
            .durations
            .iter()
            .map(|(upper, cumulative)| {
                let here = cumulative.saturating_sub(below);
                below = *cumulative;
                (*upper, here)
            })
            .collect();
        let mut hist = encoder.encode_descriptor(
            "writ_verification_duration_seconds",
            "Duration of each run of the verification loop",
            None,
            MetricType::Histogram,
        )?;
        hist.encode_histogram::<NoLabelSet>(stats.duration_sum, below, &buckets, None)?;
        let verified = i64::try_from(status.verified_size).unwrap_or(i64::MAX);
        ConstGauge::new(verified).encode(encoder.encode_descriptor(
            "writ_verification_verified_size",
            "Entries the verification loop has recomputed and found to hash to the stored tree",
            None,
            MetricType::Gauge,
        )?)?;
        Ok(())
    }
}

/// An outcome as a label value.
fn outcome_label(o: writ_engine::Outcome) -> &'static str {
    match o {
        writ_engine::Outcome::Allow => "allow",
        writ_engine::Outcome::Deny => "deny",
        writ_engine::Outcome::Pending => "pending",
    }
}
