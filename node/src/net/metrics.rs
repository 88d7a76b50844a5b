//! The daemon's counters, exposed on `/metrics` in the Prometheus text format.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// The label of request counters: the request's kind and how it was answered.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// `submit_release`, `query`, …
    pub kind: String,
    /// `answered`, `refused` or `error`.
    pub outcome: String,
}

/// The label of delivery counters: what was delivered.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeliveryLabels {
    /// `release` or `aggregate`.
    pub kind: String,
}

/// Every metric of the daemon.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Requests answered, by kind and outcome.
    pub requests: Family<RequestLabels, Counter>,
    /// Bytes of request payloads received from peers.
    pub bytes_received: Counter,
    /// Bytes of request payloads sent to peers (submissions, queries).
    pub bytes_sent: Counter,
    /// Submissions delivered upstream and acknowledged by a receipt.
    pub delivered: Family<DeliveryLabels, Counter>,
    /// Delivery attempts that failed and will be retried.
    pub delivery_failures: Family<DeliveryLabels, Counter>,
    /// Submissions waiting for a receipt.
    pub outbox: Gauge,
    /// Established connections.
    pub connections: Gauge,
    /// Leaves in the contribution log (hubs and national nodes).
    pub log_size: Gauge,
    /// Gossiped checkpoints rejected (bad signature, unknown signer, contradiction).
    pub gossip_rejected: Counter,
    /// Batches of members' releases accepted together (one checkpoint and one sync each).
    pub ingest_batches: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("maillage");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Requests from peers, by kind and outcome",
            requests.clone(),
        );
        let bytes_received = Counter::default();
        registry.register(
            "request_bytes_received",
            "Bytes of requests received from peers",
            bytes_received.clone(),
        );
        let bytes_sent = Counter::default();
        registry.register(
            "request_bytes_sent",
            "Bytes of requests sent to peers",
            bytes_sent.clone(),
        );
        let delivered = Family::<DeliveryLabels, Counter>::default();
        registry.register(
            "delivered",
            "Submissions acknowledged by the upstream node",
            delivered.clone(),
        );
        let delivery_failures = Family::<DeliveryLabels, Counter>::default();
        registry.register(
            "delivery_failures",
            "Delivery attempts that failed and will be retried",
            delivery_failures.clone(),
        );
        let outbox = Gauge::default();
        registry.register(
            "outbox",
            "Submissions waiting for a receipt",
            outbox.clone(),
        );
        let connections = Gauge::default();
        registry.register(
            "connections",
            "Established libp2p connections",
            connections.clone(),
        );
        let log_size = Gauge::default();
        registry.register(
            "log_size",
            "Leaves in the contribution log",
            log_size.clone(),
        );
        let gossip_rejected = Counter::default();
        registry.register(
            "gossip_rejected",
            "Gossiped checkpoints rejected",
            gossip_rejected.clone(),
        );
        let ingest_batches = Counter::default();
        registry.register(
            "ingest_batches",
            "Batches of releases accepted together, each under one checkpoint and one sync",
            ingest_batches.clone(),
        );
        Self {
            registry,
            requests,
            bytes_received,
            bytes_sent,
            delivered,
            delivery_failures,
            outbox,
            connections,
            log_size,
            gossip_rejected,
            ingest_batches,
        }
    }
}

impl Metrics {
    /// The registry, for counters kept elsewhere (the policy sync's).
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// Counts one answered request.
    pub fn request(&self, kind: &str, outcome: &str) {
        self.requests
            .get_or_create(&RequestLabels {
                kind: kind.into(),
                outcome: outcome.into(),
            })
            .inc();
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_names_every_metric() {
        let m = Metrics::default();
        m.request("submit_release", "answered");
        m.bytes_sent.inc_by(1234);
        let text = m.encode();
        assert!(
            text.contains(
                "maillage_requests_total{kind=\"submit_release\",outcome=\"answered\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("maillage_request_bytes_sent_total 1234"),
            "{text}"
        );
        assert!(text.contains("# TYPE maillage_outbox gauge"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
