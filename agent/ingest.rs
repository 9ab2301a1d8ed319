//! `endo-agent ingest`: the cloud end of the MQTT route. Subscribes to every device's
//! frames topic (`{mqtt.topic_prefix}/+/+/frames`, QoS 1, persistent session) and writes
//! each frame's JPEG and record into the S3 datalake under the key the agent chose — the
//! same objects the `s3` sink writes, so both routes land identical datalake contents.
//!
//! A message is acknowledged (PUBACK, manual acks) only after both PUTs succeeded; until
//! then the broker keeps it, and redelivers it after a reconnect or restart. A frame may
//! therefore be stored twice (same key, same bytes), never lost. A message that can never
//! be stored is logged, counted as rejected and acknowledged, so it cannot block the
//! queue: no key or an unsafe one; a key outside `{datalake.prefix}/{site}/{device}/` of
//! the topic it came on (one tower cannot write into another's or anywhere else); a record
//! whose key differs; a payload that is no JPEG or whose sha256 and size differ from the
//! record's `jpeg` (a forged or damaged frame is not stored as one).
//!
//! An ack goes out only on the connection its message came on. rumqttc drops the acks
//! still queued when a connection fails; ingest does not queue the ones of frames it
//! stores while the broker is away ([`Connection`]): those would reach the broker on the
//! next connection, beside the copy the broker resends there, and the second ack of the
//! pair acknowledges a packet id the broker no longer holds, or has given to another
//! message, which would then be acked before it was stored. The resent copy is stored
//! (again) and acked instead.
//!
//! At a stop, no new message is taken; the one being stored is finished and acknowledged,
//! and the connection is closed only after every acknowledgement was sent (a DISCONNECT
//! queued behind them), so a restart receives again only what was not stored.
//!
//! Two message formats are accepted ([`frame_of`]): the framed payload (JPEG, record and
//! annotation in the payload, format in [`crate::uplink::mqtt`]) that agents send, and the
//! format before it (payload = the JPEG, record and annotation as user properties), so
//! that messages queued at the broker by an agent not yet upgraded are still stored.

use crossbeam_channel::{unbounded, Receiver};
use rumqttc::v5::mqttbytes::v5::{Filter, Packet, Publish};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event};
use rumqttc::Outgoing;
use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::backoff::Backoff;
use crate::config::Config;
use crate::ingest_status::Health;
use crate::shutdown::Shutdown;
use crate::uplink::mqtt::{mqtt_options, wire};
use crate::uplink::s3::S3Client;
use crate::uplink::{is_safe_key, SinkError};

/// What an ingest run did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct IngestStats {
    /// Frame messages received (redeliveries included).
    pub received: u64,
    /// Messages written to the store: frames, and procedure records (no image).
    pub stored: u64,
    /// Of those, keys already written earlier in this run (redeliveries).
    pub duplicates: u64,
    /// Messages that could not be stored and were dropped.
    pub rejected: u64,
    /// Frames stored but not acked (their connection had failed, or the request queue
    /// stayed full): the broker sends them again.
    pub unacked: u64,
}

/// Which broker connection is current: bumped at each failure, so that a message can be
/// acked only on the connection it came on.
#[derive(Clone, Default)]
pub struct Connection(Arc<AtomicU64>);

impl Connection {
    /// The current connection's number.
    pub fn current(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }

    /// The connection failed: messages received so far belong to an old one.
    pub fn failed(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }

    /// A message received on connection `of` may still be acked.
    pub fn is_current(&self, of: u64) -> bool {
        self.current() == of
    }
}

/// A frame message and the connection it came on.
struct Received {
    publish: Publish,
    connection: u64,
}

/// A frame message, checked: its key and the three objects to store under it.
#[derive(Debug, PartialEq, Eq)]
pub struct FrameMsg<'a> {
    pub key: String,
    pub jpeg: &'a [u8],
    pub record: std::borrow::Cow<'a, [u8]>,
    /// Empty when the frame was not annotated.
    pub annotation: std::borrow::Cow<'a, [u8]>,
}

/// Where frames may come from and go: the topic prefix they are published under and the
/// first segment of every datalake key (`mqtt.topic_prefix`, `datalake.prefix`).
#[derive(Debug, Clone, Copy)]
pub struct Route<'a> {
    pub topic_prefix: &'a str,
    pub key_prefix: &'a str,
}

/// Why a message can never be stored: a reason label (`endo_ingest_rejected_total`) and
/// what is wrong with it.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    /// `topic`, `key`, `payload` or `annotation` ([`crate::ingest_status::REJECT_REASONS`]).
    pub reason: &'static str,
    pub detail: String,
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.detail)
    }
}

fn rejected<E: Into<String>>(reason: &'static str) -> impl FnOnce(E) -> Rejection {
    move |e| Rejection {
        reason,
        detail: e.into(),
    }
}

/// Decode and check a frame message, in either format (see the module docs).
pub fn frame_of<'p>(p: &'p Publish, route: &Route) -> Result<FrameMsg<'p>, Rejection> {
    use std::borrow::Cow;
    let topic =
        std::str::from_utf8(&p.topic).map_err(|_| rejected("topic")("the topic is not UTF-8"))?;
    let (site, device) = site_and_device(topic, route).map_err(rejected("topic"))?;
    let props = p
        .properties
        .as_ref()
        .ok_or_else(|| rejected("key")("no MQTT 5 properties"))?;
    let get = |name: &str| {
        props
            .user_properties
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let key = get("key").ok_or_else(|| rejected("key")("no `key` user property"))?;
    if !is_safe_key(key) {
        return Err(rejected("key")(format!(
            "unsafe key {:?}",
            crate::clip(key)
        )));
    }
    let own = format!("{}/{site}/{device}/", route.key_prefix);
    if !key.starts_with(&own) {
        return Err(rejected("key")(format!(
            "key {:?} is not under {own} of the topic it came on",
            crate::clip(key)
        )));
    }
    let (jpeg, record, annotation): (&[u8], Cow<[u8]>, Cow<[u8]>) = if wire::is_framed(&p.payload) {
        let f = wire::decode(&p.payload).map_err(rejected("payload"))?;
        (f.jpeg, f.record.into(), f.annotation.into())
    } else {
        // Before the framed payload: record and annotation as user properties.
        let record = get("record").ok_or_else(|| {
            rejected("payload")("neither a framed payload nor a `record` user property")
        })?;
        let annotation = get("annotation").unwrap_or_default();
        (
            &p.payload,
            Cow::Owned(record.as_bytes().to_vec()),
            Cow::Owned(annotation.as_bytes().to_vec()),
        )
    };
    check_record(key, jpeg, &record).map_err(rejected("payload"))?;
    if !annotation.is_empty() {
        serde_json::from_slice::<serde_json::Value>(&annotation)
            .map_err(|e| rejected("annotation")(format!("annotation is not JSON: {e}")))?;
    }
    Ok(FrameMsg {
        key: key.to_string(),
        jpeg,
        record,
        annotation,
    })
}

/// The site and device of a frame topic, `{topic_prefix}/{site}/{device}/frames`.
fn site_and_device<'t>(topic: &'t str, route: &Route) -> Result<(&'t str, &'t str), String> {
    topic
        .strip_prefix(route.topic_prefix)
        .and_then(|t| t.strip_prefix('/'))
        .and_then(|t| t.strip_suffix("/frames"))
        .and_then(|t| t.split_once('/'))
        .filter(|(s, d)| crate::config::is_key_segment(s) && crate::config::is_key_segment(d))
        .ok_or_else(|| {
            format!(
                "topic {:?} is not {}/<site>/<device>/frames",
                crate::clip(topic),
                route.topic_prefix
            )
        })
}

/// The record is JSON about this key and describes this JPEG (bytes and sha256), and the
/// JPEG is one (SOI and a marker at the start, EOI at the end). Without a JPEG, the
/// record must be a procedure record under a session's `procedure` key.
fn check_record(key: &str, jpeg: &[u8], record: &[u8]) -> Result<(), String> {
    let doc: serde_json::Value =
        serde_json::from_slice(record).map_err(|e| format!("record is not JSON: {e}"))?;
    if doc.get("key").and_then(|k| k.as_str()) != Some(key) {
        return Err(format!("record's key differs from the message key {key:?}"));
    }
    if jpeg.is_empty() {
        let procedure = doc.get("schema").and_then(|k| k.as_str())
            == Some(crate::procedure::SCHEMA)
            && key.rsplit('/').next() == Some(crate::procedure::NAME);
        return if procedure {
            Ok(())
        } else {
            Err("a message without a JPEG that is not a procedure record".into())
        };
    }
    // A JPEG starts with SOI and a marker, and ends with EOI.
    if !(jpeg.starts_with(&[0xff, 0xd8, 0xff]) && jpeg.ends_with(&[0xff, 0xd9])) {
        return Err(format!("the payload ({} bytes) is not a JPEG", jpeg.len()));
    }
    let want = doc["jpeg"]["sha256"]
        .as_str()
        .ok_or("the record has no jpeg.sha256")?;
    let actual = crate::sha256_hex(jpeg);
    if !want.eq_ignore_ascii_case(&actual)
        || doc["jpeg"]["bytes"].as_u64() != Some(jpeg.len() as u64)
    {
        return Err(format!(
            "the JPEG ({} bytes, sha256 {actual}) is not the one its record describes ({} bytes, sha256 {})",
            jpeg.len(),
            doc["jpeg"]["bytes"],
            crate::clip(want)
        ));
    }
    Ok(())
}

/// The subscription: every tower's frames topic, through the MQTT 5 shared subscription
/// `$share/{group}/…` when a group is set (the broker hands each message to one of the
/// group's sessions, so N replicas split the load).
pub fn frames_filter(topic_prefix: &str, share_group: &str) -> String {
    let plain = format!("{topic_prefix}/+/+/frames");
    if share_group.is_empty() {
        plain
    } else {
        format!("$share/{share_group}/{plain}")
    }
}

/// The client id: `ENDO_INGEST_CLIENT_ID` (a replica's own name: a StatefulSet's pod
/// name), else `mqtt.client_id`, else `endo-ingest`. Replicas must differ: a broker
/// drops the older of two connections with one id, and each session holds the frames
/// it was sent and has not acknowledged.
fn client_id(cfg: &Config, from_env: Option<String>) -> Result<String, SinkError> {
    match from_env.filter(|v| !v.is_empty()) {
        Some(id) if crate::config::is_key_segment(&id) => Ok(id),
        Some(id) => Err(SinkError::Setup {
            sink: "mqtt",
            detail: format!(
                "ENDO_INGEST_CLIENT_ID={:?}: must be 1-64 characters of [A-Za-z0-9._-]",
                crate::clip(&id)
            ),
        }),
        None if cfg.mqtt.client_id.is_empty() => Ok("endo-ingest".to_string()),
        None => Ok(cfg.mqtt.client_id.clone()),
    }
}

/// Bind `[ingest] listen` (empty: no listener) and log the address (port 0 picks one).
fn listen(
    addr: &str,
    rt: &tokio::runtime::Runtime,
) -> Result<Option<tokio::net::TcpListener>, SinkError> {
    if addr.is_empty() {
        return Ok(None);
    }
    let listener = rt
        .block_on(tokio::net::TcpListener::bind(addr))
        .map_err(|e| SinkError::Setup {
            sink: "http",
            detail: format!("ingest.listen {addr}: {e}"),
        })?;
    if let Ok(a) = listener.local_addr() {
        tracing::info!("ingest metrics and health on http://{a}");
    }
    Ok(Some(listener))
}

/// Run until `stop` is set. Connection problems are retried forever with backoff.
pub fn run(cfg: &Config, stop: Shutdown) -> Result<IngestStats, SinkError> {
    let client_id = client_id(cfg, std::env::var("ENDO_INGEST_CLIENT_ID").ok())?;
    let opts = session_options(cfg, &client_id)?;
    let store = S3Client::new(&cfg.s3)?;
    let filter = frames_filter(&cfg.mqtt.topic_prefix, &cfg.ingest.share_group);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| SinkError::Setup {
            sink: "mqtt",
            detail: format!("tokio runtime: {e}"),
        })?;
    let (client, mut eventloop) = AsyncClient::new(opts, 128);
    // Unbounded, so that the event loop never waits for the writer: the writer's acks
    // go out through that same loop, and a loop blocked on a full queue while the writer
    // waits for room for an ack is a deadlock that dropped acks (issue 12 item 8). What
    // is queued is bounded by the broker: at most `receive_maximum` unacknowledged
    // messages (a broker that sends more is warned about below).
    let (tx, rx) = unbounded::<Received>();
    let connection = Connection::default();
    let route = (cfg.mqtt.topic_prefix.clone(), cfg.datalake.prefix.clone());
    let health = Arc::new(Health::default());
    // The recorder first: series created before it exists go nowhere.
    let prometheus = crate::metrics::install();
    crate::ingest_status::init();
    let listener = listen(&cfg.ingest.listen, &rt)?;
    let acks = Acks {
        client: client.clone(),
        connection: connection.clone(),
    };
    let writer = spawn_writer(store, route, rx, acks, stop.clone(), health.clone())?;
    let mut received = 0u64;
    tracing::info!(host = %cfg.mqtt.host, port = cfg.mqtt.port, %client_id, %filter, "ingest starting");
    // A session that subscribed plainly before the group was set would get every frame
    // besides its share: that subscription is dropped at each connect.
    let plain = frames_filter(&cfg.mqtt.topic_prefix, "");
    let stale = (plain != filter).then_some(plain.as_str());
    rt.block_on(async {
        // rumqttc's poll is driven without interruption (cancelling it mid-write could
        // leave half a packet in its buffer) until the DISCONNECT queued at the stop,
        // behind the writer's last acks, went out.
        if let Some(listener) = listener {
            let app = crate::ingest_status::router(prometheus, health.clone());
            let stop = stop.clone();
            let until = async move { stop.stopped().await };
            tokio::spawn(crate::http::serve(listener, app, until, None));
        }
        let link = Link {
            client: &client,
            filter: &filter,
            stale,
            health: &health,
            stop: &stop,
            connection: &connection,
        };
        tokio::select! {
            _ = link.drive(&mut eventloop, &tx, &mut received) => {}
            _ = link.close(&writer) => {}
        }
    });
    drop(tx);
    let mut stats = writer.join().expect("ingest writer panicked");
    stats.received = received;
    Ok(stats)
}

/// A persistent session (frames published while ingest is away wait at the broker),
/// acknowledged by hand, at most [`RECEIVE_MAXIMUM`] unacknowledged at once.
fn session_options(cfg: &Config, client_id: &str) -> Result<rumqttc::v5::MqttOptions, SinkError> {
    let mut opts = mqtt_options(&cfg.mqtt, client_id)?;
    opts.set_clean_start(false);
    opts.set_session_expiry_interval(Some(7 * 24 * 3600));
    opts.set_manual_acks(true);
    opts.set_receive_maximum(Some(RECEIVE_MAXIMUM));
    Ok(opts)
}

/// The store writer's thread ([`store_loop`]); `route` = (topic prefix, key prefix).
fn spawn_writer(
    store: S3Client,
    route: (String, String),
    rx: Receiver<Received>,
    acks: Acks,
    stop: Shutdown,
    health: Arc<Health>,
) -> Result<std::thread::JoinHandle<IngestStats>, SinkError> {
    std::thread::Builder::new()
        .name("ingest-store".into())
        .spawn(move || {
            let route = Route {
                topic_prefix: &route.0,
                key_prefix: &route.1,
            };
            store_loop(store, &route, rx, acks, stop, &health)
        })
        .map_err(|e| SinkError::Setup {
            sink: "s3",
            detail: format!("thread: {e}"),
        })
}

/// Ingest's side of the broker connection.
struct Link<'a> {
    client: &'a AsyncClient,
    filter: &'a str,
    /// A subscription of an earlier configuration to drop (the plain one, when shared).
    stale: Option<&'a str>,
    health: &'a Health,
    stop: &'a Shutdown,
    connection: &'a Connection,
}

impl Link<'_> {
    /// Poll the connection: subscribe at each CONNACK, hand each frame message to the
    /// writer (none while stopping: not acknowledged, sent again next start), reconnect
    /// with backoff. Ends when the DISCONNECT went out, or at an error while stopping.
    async fn drive(
        &self,
        eventloop: &mut rumqttc::v5::EventLoop,
        tx: &crossbeam_channel::Sender<Received>,
        received: &mut u64,
    ) {
        let mut backoff = Backoff::new(
            Duration::from_millis(200),
            Duration::from_secs(30),
            Duration::from_secs(60),
        );
        let mut warned = false;
        loop {
            let stopping = self.stop.is_stopped();
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) if !stopping => {
                    backoff.reset();
                    self.health.set_connected(true);
                    tracing::info!("ingest connected; subscribing to {}", self.filter);
                    let f = Filter::new(self.filter.to_string(), QoS::AtLeastOnce);
                    if let Err(e) = self.client.try_subscribe_many([f]) {
                        tracing::error!("subscribe: {e}");
                    }
                    if let Some(old) = self.stale {
                        if let Err(e) = self.client.try_unsubscribe(old) {
                            tracing::error!("unsubscribe {old}: {e}");
                        }
                    }
                }
                Ok(Event::Incoming(Packet::Publish(_))) if stopping => {}
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    *received += 1;
                    metrics::counter!("endo_ingest_messages_total").increment(1);
                    let r = Received {
                        publish: p,
                        connection: self.connection.current(),
                    };
                    if tx.send(r).is_err() {
                        return;
                    }
                    if tx.len() > 2 * RECEIVE_MAXIMUM as usize && !warned {
                        warned = true;
                        tracing::warn!(
                            "{} messages wait for the store: the broker sends more than the {RECEIVE_MAXIMUM} unacknowledged ones ingest asked for",
                            tx.len()
                        );
                    }
                }
                Ok(Event::Outgoing(Outgoing::Disconnect)) => return,
                Ok(_) => {}
                Err(_) if stopping => return,
                Err(e) => {
                    // poll dropped the acks still queued; none of this connection's
                    // messages may be acked from now on.
                    self.connection.failed();
                    self.health.set_connected(false);
                    let e = crate::uplink::mqtt::classify(e.to_string());
                    let wait = backoff.on_failure(Duration::ZERO);
                    tracing::error!("{e}; retrying in {wait:?}");
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = self.stop.stopped() => {}
                    }
                }
            }
        }
    }

    /// At the stop: the writer finishes the frame in hand (a PUT is bounded by
    /// s3.timeout_s) and acks it; then the DISCONNECT goes into the request queue behind
    /// every ack, and `drive` ends once it went out. A broker that does not answer cannot
    /// hold the stop up for ever: this ends after [`STOP_TIMEOUT`].
    async fn close(&self, writer: &std::thread::JoinHandle<IngestStats>) {
        self.stop.stopped().await;
        while !writer.is_finished() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if let Err(e) = self.client.disconnect().await {
            tracing::warn!("disconnect: {e}");
        }
        tokio::time::sleep(STOP_TIMEOUT).await;
        tracing::warn!("the broker did not take the disconnect within {STOP_TIMEOUT:?}");
    }
}

/// Unacknowledged messages the broker may send at once (MQTT 5 receive maximum).
const RECEIVE_MAXIMUM: u16 = 64;

/// How long a stop waits for the DISCONNECT (behind the last acks) to go out.
const STOP_TIMEOUT: Duration = Duration::from_secs(40);

/// How many stored keys ingest remembers to count redeliveries as duplicates.
const RECENT_KEYS: usize = 100_000;

/// The last `cap` distinct keys stored, oldest forgotten first: redeliveries come soon
/// after the original, and a months-long ingest must not grow without bound.
struct RecentKeys {
    set: HashSet<String>,
    order: VecDeque<String>,
    cap: usize,
}

impl RecentKeys {
    fn new(cap: usize) -> RecentKeys {
        RecentKeys {
            set: HashSet::new(),
            order: VecDeque::new(),
            cap,
        }
    }

    /// Remember `key`; false when it was already among the recent keys.
    fn insert(&mut self, key: String) -> bool {
        if self.set.contains(&key) {
            return false;
        }
        if self.order.len() == self.cap {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        self.set.insert(key.clone());
        self.order.push_back(key);
        true
    }
}

fn store_loop(
    store: S3Client,
    route: &Route,
    rx: Receiver<Received>,
    acks: Acks,
    stop: Shutdown,
    health: &Health,
) -> IngestStats {
    let mut stats = IngestStats::default();
    let mut seen = RecentKeys::new(RECENT_KEYS);
    let mut backoff = Backoff::new(
        Duration::from_millis(200),
        Duration::from_secs(30),
        Duration::MAX,
    );
    loop {
        // At a stop, what is still queued is left unacknowledged: the broker sends it
        // again next start.
        let r = match rx.recv_timeout(Duration::from_millis(100)) {
            _ if stop.is_stopped() => return stats,
            Ok(r) => r,
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => continue,
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return stats,
        };
        let p = &r.publish;
        match frame_of(p, route) {
            Err(why) => {
                tracing::error!(topic = %crate::clip(&String::from_utf8_lossy(&p.topic)), reason = why.reason, "dropping a frame message: {why}");
                stats.rejected += 1;
                metrics::counter!("endo_ingest_rejected_total", "reason" => why.reason)
                    .increment(1);
            }
            Ok(FrameMsg {
                key,
                jpeg,
                record,
                annotation,
            }) => loop {
                let started = std::time::Instant::now();
                let put = store.put_frame(&key, jpeg, &annotation, &record);
                metrics::histogram!("endo_ingest_s3_put_seconds")
                    .record(started.elapsed().as_secs_f64());
                match put {
                    Ok(()) => {
                        backoff.reset();
                        health.set_store_failing(false);
                        stats.stored += 1;
                        metrics::counter!("endo_ingest_stored_total").increment(1);
                        if !seen.insert(key.clone()) {
                            stats.duplicates += 1;
                            metrics::counter!("endo_ingest_duplicates_total").increment(1);
                        }
                        if let Some(lag) = lag_seconds(&record) {
                            metrics::gauge!("endo_ingest_lag_seconds").set(lag);
                        }
                        tracing::debug!(%key, "stored");
                        break;
                    }
                    Err(e) => {
                        health.set_store_failing(true);
                        metrics::counter!("endo_ingest_s3_errors_total").increment(1);
                        let wait = backoff.on_failure(Duration::ZERO);
                        tracing::error!(%key, "{e}; retrying in {wait:?}");
                        if stop.sleep(wait) {
                            // Not stored: no ack, the broker redelivers it next time.
                            return stats;
                        }
                    }
                }
            },
        }
        if !acks.send(&r) {
            stats.unacked += 1;
        }
    }
}

/// Seconds from the record's `captured_at` to now (None if it has none readable).
fn lag_seconds(record: &[u8]) -> Option<f64> {
    let doc: serde_json::Value = serde_json::from_slice(record).ok()?;
    let at = chrono::DateTime::parse_from_rfc3339(doc.get("captured_at")?.as_str()?).ok()?;
    let lag = chrono::Utc::now().signed_duration_since(at);
    Some(lag.num_milliseconds() as f64 / 1000.0)
}

/// The writer's acks: sent only on the connection the message came on.
struct Acks {
    client: AsyncClient,
    connection: Connection,
}

impl Acks {
    /// Acknowledge `r`; false when its connection failed (the broker sends it again, and
    /// that copy is acked). The request queue is full only for as long as the event loop
    /// (which never waits for the writer) is busy; wait for room instead of dropping the
    /// ack (a dropped ack is a frame received again).
    ///
    /// A failure between the check and the queueing can still let one ack through to the
    /// next connection: the window is the few instructions from rumqttc's drop of queued
    /// acks to [`Connection::failed`], against seconds of broker outage before.
    fn send(&self, r: &Received) -> bool {
        let end = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if !self.connection.is_current(r.connection) {
                tracing::debug!(
                    "stored, not acked: its connection failed; the broker sends it again"
                );
                return false;
            }
            match self.client.try_ack(&r.publish) {
                Ok(()) => return true,
                Err(e) if std::time::Instant::now() >= end => {
                    tracing::warn!("ack: {e} (the frame is stored; it will be received again)");
                    return false;
                }
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rumqttc::v5::mqttbytes::v5::PublishProperties;

    const ROUTE: Route = Route {
        topic_prefix: "endo",
        key_prefix: "frames",
    };
    const KEY: &str = "frames/s/d/2026/11/21/sess/0000000001";
    const JPEG: &[u8] = b"\xff\xd8\xff\xe0 a JPEG \xff\xd9";

    /// The record an agent writes for `jpeg` under `key`.
    fn record(key: &str, jpeg: &[u8]) -> String {
        serde_json::json!({
            "key": key,
            "sequence": 1,
            "jpeg": {"bytes": jpeg.len(), "sha256": crate::sha256_hex(jpeg), "quality": 90},
        })
        .to_string()
    }

    /// A message in the format before the framed payload: the payload is the JPEG.
    fn msg(topic: &str, key: &str, jpeg: &[u8], record: &str) -> Publish {
        Publish::new(
            topic,
            QoS::AtLeastOnce,
            jpeg.to_vec(),
            Some(PublishProperties {
                user_properties: vec![("key".into(), key.into()), ("record".into(), record.into())],
                ..Default::default()
            }),
        )
    }

    /// A message as agents send it now: everything in the framed payload.
    fn framed(key: &str, jpeg: &[u8], record: &str, annotation: &str) -> Publish {
        Publish::new(
            "endo/s/d/frames",
            QoS::AtLeastOnce,
            wire::encode(jpeg, record.as_bytes(), annotation.as_bytes()),
            Some(PublishProperties {
                content_type: Some(wire::CONTENT_TYPE.into()),
                user_properties: vec![("key".into(), key.into())],
                ..Default::default()
            }),
        )
    }

    #[test]
    fn replicas_share_one_subscription_each_under_its_own_id() {
        assert_eq!(frames_filter("endo", ""), "endo/+/+/frames");
        assert_eq!(frames_filter("a/b", "lake"), "$share/lake/a/b/+/+/frames");
        let mut cfg = Config::default();
        assert_eq!(client_id(&cfg, None).unwrap(), "endo-ingest");
        cfg.mqtt.client_id = "ingest-a".into();
        assert_eq!(client_id(&cfg, Some(String::new())).unwrap(), "ingest-a");
        assert_eq!(
            client_id(&cfg, Some("ingest-1".into())).unwrap(),
            "ingest-1"
        );
        let e = client_id(&cfg, Some("a b".into()))
            .unwrap_err()
            .to_string()
            .to_string();
        assert!(e.contains("ENDO_INGEST_CLIENT_ID"), "{e}");
    }

    #[test]
    fn recent_keys_count_repeats_and_stay_bounded() {
        let mut r = RecentKeys::new(2);
        assert!(r.insert("a".into()));
        assert!(!r.insert("a".into()), "a repeat");
        assert!(r.insert("b".into()));
        assert!(r.insert("c".into()), "a is forgotten now");
        assert!(r.insert("a".into()));
        assert_eq!((r.set.len(), r.order.len()), (2, 2));
    }

    #[test]
    fn a_framed_message_yields_the_exact_objects() {
        let rec = record(KEY, JPEG);
        let ann = format!(
            r#"{{"annotations":[{}]}}"#,
            "[1.5,2.5],".repeat(8000) + "[0,0]"
        );
        let p = framed(KEY, JPEG, &rec, &ann);
        let f = frame_of(&p, &ROUTE).unwrap();
        assert_eq!(f.key, KEY);
        assert_eq!(f.jpeg, JPEG);
        assert_eq!(&*f.record, rec.as_bytes());
        assert_eq!(&*f.annotation, ann.as_bytes());
        let plain = framed(KEY, JPEG, &rec, "");
        let f = frame_of(&plain, &ROUTE).unwrap();
        assert!(f.annotation.is_empty());
        // The same checks as for the old format.
        assert!(
            frame_of(&framed(KEY, JPEG, r#"{"key":"other"}"#, ""), &ROUTE)
                .unwrap_err()
                .to_string()
                .contains("differs")
        );
        assert!(frame_of(&framed(KEY, JPEG, &rec, "{"), &ROUTE)
            .unwrap_err()
            .to_string()
            .contains("annotation"));
        let mut bad = framed(KEY, JPEG, &rec, "");
        let mut payload = bad.payload.to_vec();
        payload.push(0);
        bad.payload = payload.into();
        assert!(frame_of(&bad, &ROUTE)
            .unwrap_err()
            .to_string()
            .contains("do not match"));
    }

    #[test]
    fn a_frame_message_needs_a_safe_key_matching_its_record() {
        let old = msg("endo/s/d/frames", KEY, JPEG, &record(KEY, JPEG));
        let f = frame_of(&old, &ROUTE).unwrap();
        assert_eq!(f.key, KEY);
        assert_eq!(f.jpeg, JPEG, "the old format: the payload is the JPEG");
        assert!(f.record.starts_with(b"{"));
        let unsafe_key = "../etc/passwd";
        let e = frame_of(
            &msg(
                "endo/s/d/frames",
                unsafe_key,
                JPEG,
                &record(unsafe_key, JPEG),
            ),
            &ROUTE,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("unsafe"), "{e}");
        let e = frame_of(
            &msg("endo/s/d/frames", KEY, JPEG, r#"{"key":"other"}"#),
            &ROUTE,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("differs"), "{e}");
        let e = frame_of(&msg("endo/s/d/frames", KEY, JPEG, "not json"), &ROUTE)
            .unwrap_err()
            .to_string();
        assert!(e.contains("JSON"), "{e}");
        let bare = Publish::new("endo/s/d/frames", QoS::AtLeastOnce, vec![1], None);
        assert!(frame_of(&bare, &ROUTE).is_err());
    }

    #[test]
    fn a_tower_can_store_only_under_its_own_site_and_device() {
        // Issue 12 item 8: a message on endo/probe/t1/frames wrote anywhere.
        let topic = "endo/probe/t1/frames";
        let own = "frames/probe/t1/2026/12/02/sess/0000000001";
        assert!(frame_of(&msg(topic, own, JPEG, &record(own, JPEG)), &ROUTE).is_ok());
        for key in [
            "frames/OTHER-SITE/OTHER-TOWER/2026/12/02/sess/0000000001",
            "frames/probe/t2/2026/12/02/sess/0000000001",
            "evil/probe/t1/2026/12/02/sess/0000000001",
            "frames/probe/t1x/2026/12/02/sess/0000000001",
        ] {
            let e = frame_of(&msg(topic, key, JPEG, &record(key, JPEG)), &ROUTE)
                .unwrap_err()
                .to_string();
            assert!(e.contains("is not under frames/probe/t1/"), "{key}: {e}");
        }
        for topic in [
            "other/probe/t1/frames",
            "endo/probe/frames",
            "endo/probe/t1/x/frames",
            "endo/probe/t1/status",
        ] {
            let e = frame_of(&msg(topic, own, JPEG, &record(own, JPEG)), &ROUTE)
                .unwrap_err()
                .to_string();
            assert!(e.contains("topic"), "{topic}: {e}");
        }
    }

    #[test]
    fn each_rejection_names_its_reason() {
        // ...and every reason is one whose series exists from the start.
        let reason = |p: Publish| {
            let r = frame_of(&p, &ROUTE).unwrap_err().reason;
            assert!(crate::ingest_status::REJECT_REASONS.contains(&r), "{r}");
            r
        };
        let good = record(KEY, JPEG);
        assert_eq!(reason(msg("endo/s/frames", KEY, JPEG, &good)), "topic");
        let other = "frames/x/y/2026/12/02/sess/0000000001";
        assert_eq!(
            reason(msg("endo/s/d/frames", other, JPEG, &record(other, JPEG))),
            "key"
        );
        assert_eq!(
            reason(msg("endo/s/d/frames", KEY, b"text", &record(KEY, b"text"))),
            "payload"
        );
        assert_eq!(reason(framed(KEY, JPEG, &good, "{")), "annotation");
    }

    #[test]
    fn a_payload_that_is_not_the_recorded_jpeg_is_refused() {
        // Issue 12 item 8: ten bytes of text were stored as a .jpg.
        let text = b"not a jpeg";
        let e = frame_of(
            &msg("endo/s/d/frames", KEY, text, &record(KEY, text)),
            &ROUTE,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("not a JPEG"), "{e}");
        // A JPEG, but not the one the record describes (replaced or damaged on the way).
        let other = b"\xff\xd8\xff\xe0 another \xff\xd9";
        let e = frame_of(
            &msg("endo/s/d/frames", KEY, other, &record(KEY, JPEG)),
            &ROUTE,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("is not the one its record describes"), "{e}");
        let no_hash = serde_json::json!({"key": KEY}).to_string();
        let e = frame_of(&msg("endo/s/d/frames", KEY, JPEG, &no_hash), &ROUTE)
            .unwrap_err()
            .to_string();
        assert!(e.contains("jpeg.sha256"), "{e}");
    }
}
