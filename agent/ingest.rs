//! `endo-agent ingest`: the cloud end of the MQTT route. Subscribes to every device's
//! frames topic (`{mqtt.topic_prefix}/+/+/frames`, QoS 1, persistent session) and writes
//! each frame's JPEG and record into the S3 datalake under the key the agent chose — the
//! same objects the `s3` sink writes, so both routes land identical datalake contents.
//!
//! A message is acknowledged (PUBACK, manual acks) only after both PUTs succeeded; until
//! then the broker keeps it, and redelivers it after a reconnect or restart. A frame may
//! therefore be stored twice (same key, same bytes), never lost. A message that can never
//! be stored (no key, unsafe key, record not matching the key) is logged, counted as
//! rejected and acknowledged, so it cannot block the queue.
//!
//! Two message formats are accepted ([`frame_of`]): the framed payload (JPEG, record and
//! annotation in the payload, format in [`crate::uplink::mqtt`]) that agents send, and the
//! format before it (payload = the JPEG, record and annotation as user properties), so
//! that messages queued at the broker by an agent not yet upgraded are still stored.

use crossbeam_channel::{bounded, Receiver};
use rumqttc::v5::mqttbytes::v5::{Filter, Packet, Publish};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event};
use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::capture::backoff::Backoff;
use crate::config::Config;
use crate::uplink::mqtt::{mqtt_options, wire};
use crate::uplink::s3::S3Client;
use crate::uplink::{is_safe_key, SinkError};

/// What an ingest run did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct IngestStats {
    /// Frame messages received (redeliveries included).
    pub received: u64,
    /// Frames written to the store.
    pub stored: u64,
    /// Of those, keys already written earlier in this run (redeliveries).
    pub duplicates: u64,
    /// Messages that could not be stored and were dropped.
    pub rejected: u64,
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

/// Decode and check a frame message, in either format (see the module docs).
pub fn frame_of(p: &Publish) -> Result<FrameMsg<'_>, String> {
    use std::borrow::Cow;
    let props = p.properties.as_ref().ok_or("no MQTT 5 properties")?;
    let get = |name: &str| {
        props
            .user_properties
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let key = get("key").ok_or("no `key` user property")?;
    if !is_safe_key(key) {
        return Err(format!("unsafe key {key:?}"));
    }
    let (jpeg, record, annotation): (&[u8], Cow<[u8]>, Cow<[u8]>) = if wire::is_framed(&p.payload) {
        let f = wire::decode(&p.payload)?;
        (f.jpeg, f.record.into(), f.annotation.into())
    } else {
        // Before the framed payload: record and annotation as user properties.
        let record =
            get("record").ok_or("neither a framed payload nor a `record` user property")?;
        let annotation = get("annotation").unwrap_or_default();
        (
            &p.payload,
            Cow::Owned(record.as_bytes().to_vec()),
            Cow::Owned(annotation.as_bytes().to_vec()),
        )
    };
    let doc: serde_json::Value =
        serde_json::from_slice(&record).map_err(|e| format!("record is not JSON: {e}"))?;
    if doc.get("key").and_then(|k| k.as_str()) != Some(key) {
        return Err(format!("record's key differs from the message key {key:?}"));
    }
    if !annotation.is_empty() {
        serde_json::from_slice::<serde_json::Value>(&annotation)
            .map_err(|e| format!("annotation is not JSON: {e}"))?;
    }
    Ok(FrameMsg {
        key: key.to_string(),
        jpeg,
        record,
        annotation,
    })
}

/// Run until `stop` is set. Connection problems are retried forever with backoff.
pub fn run(cfg: &Config, stop: Arc<AtomicBool>) -> Result<IngestStats, SinkError> {
    let client_id = if cfg.mqtt.client_id.is_empty() {
        "endo-ingest".to_string()
    } else {
        cfg.mqtt.client_id.clone()
    };
    let mut opts = mqtt_options(&cfg.mqtt, &client_id)?;
    // A persistent session: frames published while ingest is away wait at the broker.
    opts.set_clean_start(false);
    opts.set_session_expiry_interval(Some(7 * 24 * 3600));
    opts.set_manual_acks(true);
    opts.set_receive_maximum(Some(64));
    let store = S3Client::new(&cfg.s3)?;
    let filter = format!("{}/+/+/frames", cfg.mqtt.topic_prefix);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| SinkError::Setup {
            sink: "mqtt",
            detail: format!("tokio runtime: {e}"),
        })?;
    let (client, mut eventloop) = AsyncClient::new(opts, 128);
    let (tx, rx) = bounded::<Publish>(128);
    let writer = {
        let client = client.clone();
        let stop = stop.clone();
        std::thread::Builder::new()
            .name("ingest-store".into())
            .spawn(move || store_loop(store, rx, client, stop))
            .map_err(|e| SinkError::Setup {
                sink: "s3",
                detail: format!("thread: {e}"),
            })?
    };
    let mut backoff = Backoff::new(
        Duration::from_millis(200),
        Duration::from_secs(30),
        Duration::from_secs(60),
    );
    let mut received = 0u64;
    tracing::info!(host = %cfg.mqtt.host, port = cfg.mqtt.port, %filter, "ingest starting");
    rt.block_on(async {
        // rumqttc's poll is driven without interruption (cancelling it mid-write could
        // leave half a packet in its buffer); only a stop ends it, once.
        let drive = async {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        backoff.reset();
                        tracing::info!("ingest connected; subscribing to {filter}");
                        let f = Filter::new(filter.clone(), QoS::AtLeastOnce);
                        if let Err(e) = client.try_subscribe_many([f]) {
                            tracing::error!("subscribe: {e}");
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        received += 1;
                        // Never blocks: the broker sends at most `receive_maximum` (64)
                        // unacknowledged messages, and the channel holds 128.
                        if tx.send(p).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        let e = crate::uplink::mqtt::classify(e.to_string());
                        let wait = backoff.on_failure(Duration::ZERO);
                        tracing::error!("{e}; retrying in {wait:?}");
                        tokio::time::sleep(wait).await;
                    }
                }
            }
        };
        let stopped = async {
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        tokio::select! {
            _ = drive => {}
            _ = stopped => {}
        }
        // Let the writer's last acks go out.
        let _ = tokio::time::timeout(Duration::from_millis(300), async {
            loop {
                if eventloop.poll().await.is_err() {
                    break;
                }
            }
        })
        .await;
    });
    drop(tx);
    let mut stats = writer.join().expect("ingest writer panicked");
    stats.received = received;
    let _ = client.try_disconnect();
    Ok(stats)
}

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
    rx: Receiver<Publish>,
    client: AsyncClient,
    stop: Arc<AtomicBool>,
) -> IngestStats {
    let mut stats = IngestStats::default();
    let mut seen = RecentKeys::new(RECENT_KEYS);
    let mut backoff = Backoff::new(
        Duration::from_millis(200),
        Duration::from_secs(30),
        Duration::MAX,
    );
    while let Ok(p) = rx.recv() {
        match frame_of(&p) {
            Err(why) => {
                tracing::error!(topic = %String::from_utf8_lossy(&p.topic), "dropping a frame message: {why}");
                stats.rejected += 1;
            }
            Ok(FrameMsg {
                key,
                jpeg,
                record,
                annotation,
            }) => loop {
                match store.put_frame(&key, jpeg, &annotation, &record) {
                    Ok(()) => {
                        backoff.reset();
                        stats.stored += 1;
                        if !seen.insert(key.clone()) {
                            stats.duplicates += 1;
                        }
                        tracing::debug!(%key, "stored");
                        break;
                    }
                    Err(e) => {
                        let wait = backoff.on_failure(Duration::ZERO);
                        tracing::error!(%key, "{e}; retrying in {wait:?}");
                        let end = std::time::Instant::now() + wait;
                        while std::time::Instant::now() < end && !stop.load(Ordering::Relaxed) {
                            std::thread::sleep(Duration::from_millis(50));
                        }
                        if stop.load(Ordering::Relaxed) {
                            // Not stored: no ack, the broker redelivers it next time.
                            return stats;
                        }
                    }
                }
            },
        }
        if let Err(e) = client.try_ack(&p) {
            tracing::warn!("ack: {e}");
        }
    }
    stats
}

#[cfg(test)]
mod tests {
    use super::*;
    use rumqttc::v5::mqttbytes::v5::PublishProperties;

    fn msg(key: &str, record: &str) -> Publish {
        Publish::new(
            "endo/s/d/frames",
            QoS::AtLeastOnce,
            vec![0xff, 0xd8],
            Some(PublishProperties {
                user_properties: vec![("key".into(), key.into()), ("record".into(), record.into())],
                ..Default::default()
            }),
        )
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
    fn a_framed_message_yields_the_exact_objects() {
        let k = "frames/s/d/2026/11/21/sess/0000000001";
        let rec = format!(r#"{{"key":"{k}","sequence":1}}"#);
        let ann = format!(
            r#"{{"annotations":[{}]}}"#,
            "[1.5,2.5],".repeat(8000) + "[0,0]"
        );
        let p = framed(k, b"\xff\xd8jpeg", &rec, &ann);
        let f = frame_of(&p).unwrap();
        assert_eq!(f.key, k);
        assert_eq!(f.jpeg, b"\xff\xd8jpeg");
        assert_eq!(&*f.record, rec.as_bytes());
        assert_eq!(&*f.annotation, ann.as_bytes());
        let plain = framed(k, b"j", &rec, "");
        let f = frame_of(&plain).unwrap();
        assert!(f.annotation.is_empty());
        // The same checks as for the old format.
        assert!(frame_of(&framed(k, b"j", r#"{"key":"other"}"#, ""))
            .unwrap_err()
            .contains("differs"));
        assert!(frame_of(&framed(k, b"j", &rec, "{"))
            .unwrap_err()
            .contains("annotation"));
        let mut bad = framed(k, b"j", &rec, "");
        let mut payload = bad.payload.to_vec();
        payload.push(0);
        bad.payload = payload.into();
        assert!(frame_of(&bad).unwrap_err().contains("do not match"));
    }

    #[test]
    fn a_frame_message_needs_a_safe_key_matching_its_record() {
        let k = "frames/s/d/2026/11/21/sess/0000000001";
        let old = msg(k, &format!(r#"{{"key":"{k}"}}"#));
        let f = frame_of(&old).unwrap();
        assert_eq!(f.key, k);
        assert_eq!(
            f.jpeg,
            [0xff, 0xd8],
            "the old format: the payload is the JPEG"
        );
        assert!(f.record.starts_with(b"{"));
        assert!(
            frame_of(&msg("../etc/passwd", r#"{"key":"../etc/passwd"}"#))
                .unwrap_err()
                .contains("unsafe")
        );
        assert!(frame_of(&msg(k, r#"{"key":"other"}"#))
            .unwrap_err()
            .contains("differs"));
        assert!(frame_of(&msg(k, "not json")).unwrap_err().contains("JSON"));
        let bare = Publish::new("t", QoS::AtLeastOnce, vec![1], None);
        assert!(frame_of(&bare).is_err());
    }
}
