//! The MQTT sink: MQTT 5 over TLS (rumqttc + rustls), QoS 1.
//!
//! # Topics (`{p}` = `mqtt.topic_prefix`)
//!
//! - `{p}/{site}/{device}/frames` — one message per frame, QoS 1, not retained; the frame
//!   message below.
//! - `{p}/{site}/{device}/summary` — every `mqtt.summary_interval_s`, QoS 0: a JSON score
//!   summary (frames scored, good ratio, selected, delivered, fps, spool depth).
//! - `{p}/{site}/{device}/status` — retained, QoS 1: `{"state":"online",...}` after each
//!   connect, `{"state":"offline",...}` on a clean stop and as the last will.
//!
//! # The frame message (framed payload, v1)
//!
//! Properties: content type `application/vnd.endo-agent.frame.v1`, one user property
//! `key` (the datalake key stem, at most 512 bytes). The payload carries the three
//! datalake objects byte for byte, so no MQTT string (65,535 bytes at most) ever holds
//! a record or an annotation:
//!
//! ```text
//! offset  size  field
//! 0       4     magic "EAFR"
//! 4       1     version = 1
//! 5       4     J: JPEG length, u32 big-endian (0 = a document without an image: a
//!               procedure record, stored as `{key}.json` alone)
//! 9       4     R: record length, u32 big-endian
//! 13      4     A: annotation length, u32 big-endian (0 = not annotated)
//! 17      J     {key}.jpg
//! 17+J    R     {key}.json (the JSON record)
//! 17+J+R  A     {key}.annotation.json (the COCO-style annotation), if A > 0
//! ```
//!
//! The lengths must add up to the payload exactly. Encoder, decoder and the size check
//! are in [`wire`]. `ingest` also accepts the format before v1 (payload = the bare JPEG,
//! user properties `key`, `record` and `annotation`), for messages still queued at the
//! broker during an upgrade.
//!
//! # A message that can never be sent
//!
//! Before a publish is handed to rumqttc, [`wire::check_publish`] checks the topic and
//! every property against MQTT's 65,535-byte string limit and the whole packet against
//! the protocol and the broker's `maximum_packet_size` (from its CONNACK; until the first
//! CONNACK of a connection, frames wait for it). A frame that fails is refused with
//! [`SinkError::Undeliverable`], and the uplink worker dead-letters it for this sink
//! instead of retrying it for ever ([`super::worker`]).
//!
//! # When is a frame delivered?
//!
//! `AsyncClient::publish` returning Ok only means queued in the client. A frame counts as
//! delivered when the broker's PUBACK for *its* packet id arrives on the event loop, with
//! a success reason code. [`AckTracker`] makes that mapping: rumqttc assigns packet ids in
//! the order requests leave its queue, and reports `Outgoing::Publish(pkid)` for each, in
//! that order, so the n-th queued publish is the n-th `Outgoing::Publish`.
//!
//! On any connection error the event loop is dropped (not resumed: rumqttc would replay
//! its own pending copies with ids the tracker no longer knows), the tracker is cleared,
//! and the uplink worker resends every unacknowledged frame from the spool on a fresh
//! connection. A frame whose PUBACK was lost in the outage therefore arrives twice, under
//! the same key; none is lost.

use rumqttc::v5::mqttbytes::v5::{LastWill, Packet, PubAckReason, PublishProperties};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, EventLoop, MqttOptions};
use rumqttc::{Outgoing, TlsConfiguration, Transport};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

use super::{tls, Encoded, Sink, SinkError};
use crate::config::{Config, MqttConfig};

pub mod wire;

/// Seconds rumqttc may take to connect (TCP + TLS + CONNACK).
const CONNECT_TIMEOUT_S: u64 = 10;

const SINK: &str = "mqtt";

/// What became of one PUBACK.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acked {
    /// The broker stored this frame (spool id).
    Frame(u64),
    /// An acknowledged publish that was not a frame (status message).
    Other,
    /// A packet id the tracker never saw sent: ignored.
    Unknown,
}

/// Maps packet ids to spool ids, see the module docs. Pure: no network.
#[derive(Debug, Default)]
pub struct AckTracker {
    /// Publishes handed to the client, not yet given a packet id; `None` = not a frame.
    queued: VecDeque<Option<u64>>,
    /// Packet id → spool id for publishes on the wire awaiting their PUBACK.
    inflight: HashMap<u16, Option<u64>>,
}

impl AckTracker {
    /// A publish was handed to the client (`frame` = its spool id, None for other messages).
    pub fn queued(&mut self, frame: Option<u64>) {
        self.queued.push_back(frame);
    }

    /// The event loop sent the oldest queued publish with packet id `pkid` (0 = QoS 0,
    /// which gets no acknowledgement).
    pub fn sent(&mut self, pkid: u16) -> Result<(), String> {
        let Some(frame) = self.queued.pop_front() else {
            return Err(format!("publish {pkid} sent but nothing was queued"));
        };
        if pkid == 0 {
            return Ok(());
        }
        if self.inflight.insert(pkid, frame).is_some() {
            return Err(format!("packet id {pkid} reused before its PUBACK"));
        }
        Ok(())
    }

    /// The PUBACK for `pkid` arrived.
    pub fn acked(&mut self, pkid: u16) -> Acked {
        match self.inflight.remove(&pkid) {
            Some(Some(id)) => Acked::Frame(id),
            Some(None) => Acked::Other,
            None => Acked::Unknown,
        }
    }

    /// Frames queued or on the wire without their PUBACK.
    pub fn outstanding_frames(&self) -> usize {
        self.queued.iter().filter(|f| f.is_some()).count()
            + self.inflight.values().filter(|f| f.is_some()).count()
    }

    /// The connection is gone: nothing outstanding will be acknowledged.
    pub fn clear(&mut self) {
        self.queued.clear();
        self.inflight.clear();
    }
}

/// Events the driver task forwards from the rumqttc event loop.
#[derive(Debug)]
enum Ev {
    /// Connected; the broker's `maximum_packet_size`, if it announced one.
    ConnAck(Option<u32>),
    Sent(u16),
    PubAck(u16, PubAckReason),
    Error(String),
}

/// Connection options shared by the sink and `ingest`: TLS from the config, credentials,
/// keepalive, packet size for 1080p JPEGs.
pub fn mqtt_options(cfg: &MqttConfig, client_id: &str) -> Result<MqttOptions, SinkError> {
    let setup = |detail: String| SinkError::Setup { sink: SINK, detail };
    let mut o = MqttOptions::new(client_id, cfg.host.clone(), cfg.port);
    o.set_keep_alive(Duration::from_secs(cfg.keepalive_s));
    o.set_connection_timeout(CONNECT_TIMEOUT_S);
    o.set_max_packet_size(Some(64 << 20));
    if cfg.tls {
        let client = tls::opt_path(&cfg.client_cert_file).zip(tls::opt_path(&cfg.client_key_file));
        let tc = tls::client_config("mqtt", tls::opt_path(&cfg.ca_file), client).map_err(setup)?;
        o.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
            Arc::new(tc),
        )));
    }
    if !cfg.username.is_empty() {
        let password = match tls::opt_path(&cfg.password_file) {
            Some(p) => std::fs::read_to_string(p)
                .map_err(|e| setup(format!("mqtt.password_file {}: {e}", p.display())))?
                .trim_end_matches(['\r', '\n'])
                .to_string(),
            None => String::new(),
        };
        o.set_credentials(cfg.username.clone(), password);
    }
    Ok(o)
}

/// Turn a rumqttc error text into a sink error.
pub fn classify(detail: String) -> SinkError {
    // CONNACK refusals of the credentials (MQTT 5: 0x86 bad user name or password,
    // 0x87 not authorised): say which keys to look at.
    if ["BadUserNamePassword", "NotAuthorized"]
        .iter()
        .any(|c| detail.contains(c))
    {
        return SinkError::Refused {
            sink: SINK,
            detail: format!(
                "the broker refused this client's credentials (mqtt.username, mqtt.password_file, or the broker's ACL): {detail}"
            ),
        };
    }
    if tls::is_tls_error(&detail) {
        SinkError::Tls {
            sink: SINK,
            detail: tls::explain(&detail),
        }
    } else {
        SinkError::Connect { sink: SINK, detail }
    }
}

/// A closure giving the current score summary (published on the summary topic).
pub type SummaryFn = Arc<dyn Fn() -> serde_json::Value + Send + Sync>;

struct Conn {
    client: AsyncClient,
    events: mpsc::UnboundedReceiver<Ev>,
    task: tokio::task::JoinHandle<()>,
}

pub struct MqttSink {
    cfg: MqttConfig,
    client_id: String,
    topic_frames: String,
    topic_summary: String,
    topic_status: String,
    site: String,
    device: String,
    summary: Option<SummaryFn>,
    rt: tokio::runtime::Runtime,
    conn: Option<Conn>,
    tracker: AckTracker,
    connected: bool,
    /// The broker's `maximum_packet_size` from the CONNACK of this connection.
    broker_max: Option<u32>,
    /// Frames acknowledged while `send` waited for a CONNACK, reported by the next `poll`.
    early_acks: Vec<u64>,
    /// Last PUBACK (or send into an empty window): the ack timeout counts from here.
    last_progress: Instant,
    last_summary: Instant,
}

impl MqttSink {
    pub fn new(cfg: &Config, summary: Option<SummaryFn>) -> Result<MqttSink, SinkError> {
        let m = cfg.mqtt.clone();
        let base = format!("{}/{}/{}", m.topic_prefix, cfg.agent.site, cfg.agent.device);
        let client_id = if m.client_id.is_empty() {
            format!("endo-agent-{}-{}", cfg.agent.site, cfg.agent.device)
        } else {
            m.client_id.clone()
        };
        // Check certificates and keys now, so a bad path is a start-up error.
        mqtt_options(&m, &client_id)?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| SinkError::Setup {
                sink: SINK,
                detail: format!("tokio runtime: {e}"),
            })?;
        Ok(MqttSink {
            cfg: m,
            client_id,
            topic_frames: format!("{base}/frames"),
            topic_summary: format!("{base}/summary"),
            topic_status: format!("{base}/status"),
            site: cfg.agent.site.clone(),
            device: cfg.agent.device.clone(),
            summary,
            rt,
            conn: None,
            tracker: AckTracker::default(),
            connected: false,
            broker_max: None,
            early_acks: Vec::new(),
            last_progress: Instant::now(),
            last_summary: Instant::now(),
        })
    }

    fn status(&self, state: &str) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "state": state,
            "site": self.site,
            "device": self.device,
            "agent_version": env!("CARGO_PKG_VERSION"),
            "at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        }))
        .expect("json")
    }

    fn connect(&mut self) -> Result<(), SinkError> {
        if self.conn.is_some() {
            return Ok(());
        }
        let mut o = mqtt_options(&self.cfg, &self.client_id)?;
        o.set_last_will(LastWill::new(
            self.topic_status.clone(),
            self.status("offline"),
            QoS::AtLeastOnce,
            true,
            None,
        ));
        let (client, eventloop) = AsyncClient::new(o, self.cfg.inflight + 8);
        let (tx, events) = mpsc::unbounded_channel();
        let task = self.rt.spawn(drive(eventloop, tx));
        self.conn = Some(Conn {
            client,
            events,
            task,
        });
        self.last_progress = Instant::now();
        Ok(())
    }

    fn publish(
        &mut self,
        topic: &str,
        qos: QoS,
        retain: bool,
        payload: Vec<u8>,
        props: Option<PublishProperties>,
        frame: Option<u64>,
    ) -> Result<(), SinkError> {
        let conn = self.conn.as_ref().expect("connected before publishing");
        if frame.is_none() {
            // Status and summary messages are small; one that is not is skipped (and
            // said), never allowed to break the connection.
            if let Err(e) =
                wire::check_publish(topic, qos, props.as_ref(), payload.len(), self.broker_max)
            {
                tracing::warn!(topic, "not publishing: {e}");
                return Ok(());
            }
        }
        let r = match props {
            Some(p) => conn
                .client
                .try_publish_with_properties(topic, qos, retain, payload, p),
            None => conn.client.try_publish(topic, qos, retain, payload),
        };
        r.map_err(|e| SinkError::Connect {
            sink: SINK,
            detail: format!("queueing a publish: {e}"),
        })?;
        self.tracker.queued(frame);
        Ok(())
    }

    /// Wait until this connection's CONNACK has been handled (or it failed).
    fn await_connack(&mut self) -> Result<(), SinkError> {
        let deadline = Instant::now() + Duration::from_secs(CONNECT_TIMEOUT_S + 5);
        while !self.connected {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(SinkError::Timeout {
                    sink: SINK,
                    detail: format!("no CONNACK from {}:{}", self.cfg.host, self.cfg.port),
                });
            }
            let conn = self.conn.as_mut().expect("connected");
            let ev = self
                .rt
                .block_on(async { tokio::time::timeout(left, conn.events.recv()).await.ok() });
            match ev {
                Some(Some(ev)) => {
                    let mut acked = Vec::new();
                    self.handle(ev, &mut acked)?;
                    self.early_acks.extend(acked);
                }
                Some(None) => return Err(classify("event loop ended".into())),
                None => {}
            }
        }
        Ok(())
    }

    fn handle(&mut self, ev: Ev, acked: &mut Vec<u64>) -> Result<(), SinkError> {
        match ev {
            Ev::ConnAck(max) => {
                self.connected = true;
                self.broker_max = max;
                tracing::info!(host = %self.cfg.host, port = self.cfg.port, broker_max_packet = ?max, "mqtt connected");
                let status = self.status("online");
                let topic = self.topic_status.clone();
                self.publish(&topic, QoS::AtLeastOnce, true, status, None, None)?;
            }
            Ev::Sent(pkid) => self
                .tracker
                .sent(pkid)
                .map_err(|detail| SinkError::Connect {
                    sink: SINK,
                    detail: format!("protocol: {detail}"),
                })?,
            Ev::PubAck(pkid, reason) => {
                let ok = matches!(
                    reason,
                    PubAckReason::Success | PubAckReason::NoMatchingSubscribers
                );
                match self.tracker.acked(pkid) {
                    Acked::Frame(id) if ok => {
                        acked.push(id);
                        self.last_progress = Instant::now();
                    }
                    Acked::Frame(id) => {
                        return Err(SinkError::Refused {
                            sink: SINK,
                            detail: format!("broker refused frame {id}: {reason:?}"),
                        })
                    }
                    Acked::Other => {}
                    Acked::Unknown => {
                        tracing::warn!(pkid, "PUBACK for a packet id never sent; ignored")
                    }
                }
            }
            Ev::Error(detail) => {
                self.connected = false;
                return Err(classify(detail));
            }
        }
        Ok(())
    }
}

async fn drive(mut eventloop: EventLoop, tx: mpsc::UnboundedSender<Ev>) {
    loop {
        let ev = match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(c))) => {
                Ev::ConnAck(c.properties.and_then(|p| p.max_packet_size))
            }
            Ok(Event::Incoming(Packet::PubAck(p))) => Ev::PubAck(p.pkid, p.reason),
            Ok(Event::Incoming(Packet::Disconnect(d))) => {
                Ev::Error(format!("broker disconnected: {:?}", d.reason_code))
            }
            Ok(Event::Outgoing(Outgoing::Publish(pkid))) => Ev::Sent(pkid),
            Ok(_) => continue,
            Err(e) => {
                let _ = tx.send(Ev::Error(e.to_string()));
                return;
            }
        };
        let fatal = matches!(ev, Ev::Error(_));
        if tx.send(ev).is_err() || fatal {
            return;
        }
    }
}

impl Sink for MqttSink {
    fn name(&self) -> &'static str {
        SINK
    }

    fn window(&self) -> usize {
        self.cfg.inflight
    }

    fn send(&mut self, id: u64, item: Encoded) -> Result<(), SinkError> {
        // The key becomes a datalake path at the ingest side: refuse it here already.
        super::check_key("mqtt", &item.key)?;
        self.connect()?;
        // The size check needs this connection's maximum_packet_size.
        self.await_connack()?;
        if self.tracker.outstanding_frames() == 0 {
            self.last_progress = Instant::now();
        }
        let payload = wire::encode(&item.jpeg, &item.record_json, &item.annotation);
        let props = PublishProperties {
            content_type: Some(wire::CONTENT_TYPE.into()),
            user_properties: vec![("key".into(), item.key.clone())],
            ..Default::default()
        };
        let topic = self.topic_frames.clone();
        if let Err(e) = wire::check_publish(
            &topic,
            QoS::AtLeastOnce,
            Some(&props),
            payload.len(),
            self.broker_max,
        ) {
            return Err(SinkError::Undeliverable {
                sink: SINK,
                key: item.key,
                reason: e.reason(),
                detail: e.to_string(),
            });
        }
        self.publish(
            &topic,
            QoS::AtLeastOnce,
            false,
            payload,
            Some(props),
            Some(id),
        )
    }

    fn poll(&mut self, timeout: Duration) -> Result<Vec<u64>, SinkError> {
        self.connect()?;
        let mut acked = std::mem::take(&mut self.early_acks);
        let deadline = Instant::now() + timeout;
        loop {
            let conn = self.conn.as_mut().expect("connected");
            let left = deadline.saturating_duration_since(Instant::now());
            let ev = self
                .rt
                .block_on(async { tokio::time::timeout(left, conn.events.recv()).await.ok() });
            match ev {
                Some(Some(ev)) => self.handle(ev, &mut acked)?,
                Some(None) => return Err(classify("event loop ended".into())),
                None => break,
            }
            // Drain what is already there, then return what was acknowledged.
            while let Ok(ev) = self.conn.as_mut().expect("connected").events.try_recv() {
                self.handle(ev, &mut acked)?;
            }
            if !acked.is_empty() || Instant::now() >= deadline {
                break;
            }
        }
        if self.connected
            && self.cfg.summary_interval_s > 0
            && self.last_summary.elapsed() >= Duration::from_secs(self.cfg.summary_interval_s)
        {
            self.last_summary = Instant::now();
            if let Some(f) = &self.summary {
                let body = serde_json::to_vec(&f()).expect("json");
                let topic = self.topic_summary.clone();
                self.publish(&topic, QoS::AtMostOnce, false, body, None, None)?;
            }
        }
        if self.tracker.outstanding_frames() > 0
            && self.last_progress.elapsed() > Duration::from_secs(self.cfg.ack_timeout_s)
        {
            return Err(SinkError::Timeout {
                sink: SINK,
                detail: format!(
                    "{} frames without PUBACK for {} s",
                    self.tracker.outstanding_frames(),
                    self.cfg.ack_timeout_s
                ),
            });
        }
        Ok(acked)
    }

    fn reset(&mut self) {
        if let Some(c) = self.conn.take() {
            c.task.abort();
        }
        self.tracker.clear();
        self.connected = false;
        self.broker_max = None;
        self.early_acks.clear();
    }

    fn close(&mut self) {
        if !self.connected {
            return;
        }
        let status = self.status("offline");
        let topic = self.topic_status.clone();
        if self
            .publish(&topic, QoS::AtLeastOnce, true, status, None, None)
            .is_ok()
        {
            // Give the event loop a moment to send it (and its PUBACK to come back).
            let _ = self.poll(Duration::from_millis(300));
        }
        if let Some(c) = &self.conn {
            let _ = c.client.try_disconnect();
            self.rt.block_on(async {
                tokio::time::sleep(Duration::from_millis(50)).await;
            });
        }
        self.reset();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn puback_maps_to_the_frame_published_with_that_packet_id() {
        let mut t = AckTracker::default();
        t.queued(Some(10));
        t.queued(None); // status message between frames
        t.queued(Some(11));
        t.queued(Some(12));
        t.sent(1).unwrap();
        t.sent(2).unwrap();
        t.sent(3).unwrap();
        assert_eq!(t.outstanding_frames(), 3);
        // Brokers may acknowledge out of order.
        assert_eq!(t.acked(3), Acked::Frame(11));
        assert_eq!(t.acked(2), Acked::Other);
        assert_eq!(t.acked(1), Acked::Frame(10));
        assert_eq!(t.outstanding_frames(), 1, "12 is queued, not sent");
        t.sent(1).unwrap(); // pkid 1 is free again
        assert_eq!(t.acked(1), Acked::Frame(12));
        assert_eq!(t.outstanding_frames(), 0);
    }

    #[test]
    fn queued_is_not_delivered_and_unknown_acks_are_ignored() {
        let mut t = AckTracker::default();
        t.queued(Some(1));
        assert_eq!(t.acked(1), Acked::Unknown, "not sent yet: no pkid");
        assert_eq!(t.outstanding_frames(), 1);
        t.sent(7).unwrap();
        assert_eq!(t.acked(8), Acked::Unknown);
        assert_eq!(t.acked(7), Acked::Frame(1));
        assert_eq!(t.acked(7), Acked::Unknown, "a second PUBACK acks nothing");
    }

    #[test]
    fn qos0_publishes_take_their_turn_but_await_no_ack() {
        let mut t = AckTracker::default();
        t.queued(None); // summary, QoS 0
        t.queued(Some(5));
        t.sent(0).unwrap();
        t.sent(1).unwrap();
        assert_eq!(t.acked(1), Acked::Frame(5));
    }

    #[test]
    fn protocol_violations_are_errors() {
        let mut t = AckTracker::default();
        assert!(t.sent(1).is_err(), "sent with nothing queued");
        t.queued(Some(1));
        t.queued(Some(2));
        t.sent(4).unwrap();
        assert!(t.sent(4).is_err(), "pkid reused while in flight");
    }

    #[test]
    fn clear_forgets_everything_outstanding() {
        let mut t = AckTracker::default();
        t.queued(Some(1));
        t.queued(Some(2));
        t.sent(1).unwrap();
        t.clear();
        assert_eq!(t.outstanding_frames(), 0);
        assert_eq!(t.acked(1), Acked::Unknown);
    }
}
